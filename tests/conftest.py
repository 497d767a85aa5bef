"""Shared fixtures. Data from ../shared/data is found through DEBLUR_DATA (default ../shared/data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEBLUR_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA} (set DEBLUR_DATA)")
    return DATA


@pytest.fixture(autouse=True)
def _torch_threads():
    """Two threads at most: CI has 2 cores and oversubscribed OpenMP threads crawl."""
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
