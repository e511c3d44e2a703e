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


def random_gains(model, matrix_scale: float = 1.0):
    """`model` with every RMSNorm gain drawn from U(0.5, 1.5) (a gain of 1, as initialised,
    would hide a norm applied in the wrong place or not at all) and, when `matrix_scale` is
    not 1, every matrix scaled by it (logits of a useful size); in eval mode."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
            elif matrix_scale != 1.0:
                p.mul_(matrix_scale)
    return model.eval()
