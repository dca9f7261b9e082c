"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest

from models import registry


@pytest.fixture(scope="session")
def built_models() -> None:
    """Fail (not skip) when the embedded models are missing: `make test` builds them first."""
    missing = [s.name for s in registry.load_manifest()
               if s.embedded and not registry.status(s).ready]
    if missing:
        pytest.fail(f"models not built: {missing}; run: parley models build")
