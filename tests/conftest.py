"""Shared fixtures. Tests run offline: `make test` sets HF_HUB_OFFLINE=1, and every
test that needs the Hub code path uses local folders instead."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One data cache for the session, so the built-in corpus is tokenized once per config."""
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
