"""The `binding` fixture for tests that need llama-cpp-python: skip on a developer machine where it did not
build, FAIL in CI (CI=true), where a missing binding is a broken install, not a reason to test less."""
import os

import pytest

from llmos_core.models import llamacpp


@pytest.fixture
def binding():
    ok, why = llamacpp.availability()
    if not ok:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"llama-cpp-python must import in CI: {why}")
        pytest.skip(why)
