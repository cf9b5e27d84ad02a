"""The translation use case's job side without a model: the upload kept by content, the job queued with
its request, and a finished job's segments file read back as a typed, renderable result."""
import json
from types import SimpleNamespace

import pytest

from llmos_core.errors import InvalidInput, JobError
from llmos_core.settings import Settings
from llmos_core.translation import documents
from llmos_core.usecases import translate as translation
from llmos_core.accounts import LOCAL_ADMIN


class FakeScheduler:
    def __init__(self):
        self.submitted = []

    def for_user(self, actor):   # the user's view of the scheduler: the same fake
        return self

    def submit(self, kind, params, origin="local"):
        self.submitted.append((kind, params))
        return len(self.submitted)


def test_submit_read_back_and_render(home, tmp_path):
    engine = SimpleNamespace(settings=Settings.from_env(), scheduler=FakeScheduler())
    doc = documents.parse(b"Hello world.\n\nGood night.\n", "notes.txt")
    request = translation.TranslationRequest("tiny-mt", "de", "en", {"world": "Welt"})
    job_id = translation.submit_upload(engine, LOCAL_ADMIN, doc, request)
    assert translation.submit_upload(engine, LOCAL_ADMIN, doc, request) == job_id + 1   # same bytes: the same kept file
    kind, params = engine.scheduler.submitted[0]
    assert kind == "translate" and params["input"] == engine.scheduler.submitted[1][1]["input"]
    assert params["glossary"] == {"world": "Welt"} and params["pdf_output"] == "docx" and params["filename"] == "notes.txt"

    segments = tmp_path / "segments.json"
    segments.write_text(json.dumps({"sources": doc.texts(), "translations": ["Hallo Welt.", "Gute Nacht."],
                                    "stats": {"segments": 2}}))
    job = {"id": job_id, "state": "succeeded", "params": params, "result": {"segments_file": str(segments)}}
    result = translation.read_job_result(job)
    assert result.job == job_id and result.target == "de" and result.translations == ["Hallo Welt.", "Gute Nacht."]
    rendered = result.render()
    assert rendered.file_name == "notes.txt" and rendered.mime == "text/plain"
    assert b"Hallo Welt." in rendered.data and b"Gute Nacht." in rendered.data
    assert b"Bonne nuit." in result.render(["Bonjour.", "Bonne nuit."]).data    # edited in the preview
    with pytest.raises(InvalidInput, match="lost some rows"):
        result.render(["one row"])
    with pytest.raises(JobError):
        translation.read_job_result({**job, "state": "failed", "result": None})


def test_the_upload_accepts_what_documents_read():
    assert {"txt", "md", "docx", "pdf", "srt", "html", "htm"} <= set(translation.FILE_TYPES)
