"""Training data files: the ones kept under the data folder, an upload, and what a file holds.

Uploads are kept (named by content hash) so a queued job survives a page refresh; the Train page lists
them and reads the one picked, with the column mapping of a CSV or JSONL file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..training import data as datalib

# What the uploader accepts (".jsonl" -> "jsonl").
FILE_TYPES = tuple(suffix.lstrip(".") for suffix in datalib.SUFFIXES)


@dataclass
class DatasetFile:
    name: str
    path: Path

    @property
    def has_columns(self) -> bool:
        """CSV and JSONL name their fields; the page lets the user map them."""
        return self.path.suffix in (".csv", ".jsonl")


def list_datasets(settings) -> list[DatasetFile]:
    """The kept data files, by name (case-insensitive)."""
    folder = datalib.datasets_dir(settings)
    if not folder.is_dir():
        return []
    paths = sorted((p for p in folder.iterdir() if p.suffix in datalib.SUFFIXES), key=lambda p: p.name.lower())
    return [DatasetFile(p.name, p) for p in paths]


def upload_dataset(settings, filename: str, data: bytes) -> DatasetFile:
    """Check and keep an upload (size, format); the same bytes twice keep one copy."""
    path = datalib.save_upload(settings, filename, data)
    return DatasetFile(path.name, path)


def find_dataset(settings, name: str) -> DatasetFile:
    return DatasetFile(name, datalib.datasets_dir(settings) / Path(name).name)   # a name, never a path elsewhere


def columns(dataset: DatasetFile) -> list[str]:
    return datalib.load_columns(dataset.path) if dataset.has_columns else []


def read_dataset(dataset: DatasetFile, mapping: dict | None = None) -> datalib.Dataset:
    """Read and check every row: InvalidInput names the line that is wrong."""
    return datalib.load(dataset.path, mapping or {})
