"""Shared fixtures. Data from ../shared/data is found through DEBLUR_DATA (default ../shared/data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEBLUR_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    """The runtime's caches (backend choice) in a folder of this run, shared with the CLI subprocesses:
    tests neither read a user's ~/.cache nor leave anything in it."""
    import tempfile

    os.environ["DEBLUR_CACHE_DIR"] = tempfile.mkdtemp(prefix="deblur-test-cache-")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA} (set DEBLUR_DATA)")
    return DATA


@pytest.fixture(scope="session")
def small_photos(tmp_path_factory, data_dir):
    """``small_photos(n, side)``: the first ``n`` Kodak24 photos downscaled to ``side`` px: real photos, quick to train on."""
    def make(n: int, side: int) -> Path:
        import cv2

        out = tmp_path_factory.mktemp("photos")
        for p in sorted((data_dir / "sharp" / "kodak24").glob("*.png"))[:n]:
            cv2.imwrite(str(out / p.name), cv2.resize(cv2.imread(str(p)), (side, side), interpolation=cv2.INTER_AREA))
        return out

    return make


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


@pytest.fixture(scope="session")
def authors_generator():
    """An independent copy of the authors' 2018 ResnetGenerator (K@2018 models/networks.py).

    ``AuthorsG(ngf, n_blocks, track)``: an ``nn.Sequential`` named ``model`` with dropout in every
    block; ``track=True`` adds the InstanceNorm running-stat buffers PyTorch 0.4+ files carry.
    """
    import torch
    from torch import nn

    def norm(c, track):
        return nn.InstanceNorm2d(c, affine=False, track_running_stats=track)

    class Block(nn.Module):
        def __init__(self, dim, track):
            super().__init__()
            self.conv_block = nn.Sequential(
                nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm(dim, track), nn.ReLU(True), nn.Dropout(0.5),
                nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm(dim, track))

        def forward(self, x):
            return x + self.conv_block(x)

    class AuthorsG(nn.Module):
        def __init__(self, ngf=8, n_blocks=2, track=False):
            super().__init__()
            m = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, padding=0, bias=True), norm(ngf, track), nn.ReLU(True)]
            for i in range(2):
                mult = 2**i
                m += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True), norm(ngf * mult * 2, track), nn.ReLU(True)]
            m += [Block(ngf * 4, track) for _ in range(n_blocks)]
            for i in range(2):
                mult = 2 ** (2 - i)
                m += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                      norm(ngf * mult // 2, track), nn.ReLU(True)]
            m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7, padding=0), nn.Tanh()]
            self.model = nn.Sequential(*m)

        def forward(self, x):
            return torch.clamp(x + self.model(x), -1, 1)

    return AuthorsG
