"""Fixtures shared by the whole suite."""

from __future__ import annotations

import sys

import pytest

from models import registry


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop livekit's native runtime before the interpreter tears down (see
    :func:`edge.aec.livekit_apm.shut_down_livekit`)."""
    if "edge.aec.livekit_apm" in sys.modules:
        sys.modules["edge.aec.livekit_apm"].shut_down_livekit()


@pytest.fixture(scope="session")
def built_models() -> None:
    """Fail (not skip) when the embedded models are missing: `make test` builds them first."""
    missing = [s.name for s in registry.load_manifest()
               if s.embedded and not registry.status(s).ready]
    if missing:
        pytest.fail(f"models not built: {missing}; run: parley models build")
