"""Everything derives the pad multiple from the spec: train, export (static size, engine profile) and
the runtime, end to end with ``deblurgan-pico-d3`` (three stride-2 stages: multiple 8, minimum 16)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from deblur.export.cli import main as export_main
from deblur.runtime import Deblurrer
from deblur.runtime.contract import read_onnx_contract
from deblur.runtime.prepost import to_tensor, to_uint8
from deblur.runtime.spec import get_spec
from deblur.train.checkpoint import load_generator
from deblur.train.train_cli import main as train_main

SPEC = "deblurgan-pico-d3"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """Three real training steps of the multiple-8 spec on small real photos."""
    photos = tmp_path_factory.mktemp("photos")
    for p in sorted((data_dir / "sharp" / "kodak24").glob("*.png"))[:4]:
        cv2.imwrite(str(photos / p.name), cv2.resize(cv2.imread(str(p)), (96, 96), interpolation=cv2.INTER_AREA))
    out = tmp_path_factory.mktemp("run")
    rc = train_main(["--sharp", str(photos), "--spec", SPEC, "--crop", "40", "--steps", "3", "--content", "l1", "--workers", "0",
                     "--out", str(out), "--set", "critic_steps=1", "--set", "val_limit=1", "--set", "val_crop=48",
                     "--set", "tensorboard=false"])
    assert rc == 0
    return out / "g.pth"


def test_spec_knows_its_multiple():
    s = get_spec(SPEC)
    assert (s.pad_multiple, s.min_size) == (8, 16)


def test_training_crop_must_be_a_multiple_of_the_spec(tmp_path, data_dir, capsys):
    rc = train_main(["--sharp", str(data_dir / "sharp" / "kodak24"), "--spec", SPEC, "--crop", "36", "--out", str(tmp_path)])
    assert rc == 2 and "crop must be a multiple of 8" in capsys.readouterr().err


def test_export_rounds_static_size_and_profile_to_8_and_runtime_runs_it(trained, tmp_path, capsys):
    work = tmp_path / "w"
    assert export_main(["--ckpt", str(trained), "--workdir", str(work), "--static", "60x100"]) == 0
    assert read_onnx_contract(work / "g.onnx").static_hw == (64, 104)  # 60x100 rounded up to multiples of 8
    assert "rounded up to 64x104" in capsys.readouterr().err

    assert export_main(["--ckpt", str(trained), "--workdir", str(tmp_path / "d"), "--max-shape", "1x3x1084x1924"]) == 0
    assert "--max-shape 1x3x1088x1928" in capsys.readouterr().err  # the profile for the target, rounded to 8

    model, _ = load_generator(trained)
    frame = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)  # BGR, not a multiple of 8
    with Deblurrer(tmp_path / "d" / "g.onnx") as d:
        assert d.backend.multiple == 8 and d.backend.min_size == 16
        out = d(frame)
    x = to_tensor(np.ascontiguousarray(frame[..., ::-1]), 8, 16)
    assert x.shape[2:] == (40, 56)
    with torch.no_grad():
        ref = to_uint8(model(torch.from_numpy(x)).numpy(), 37, 53)[..., ::-1]
    assert out.shape == frame.shape and np.abs(out.astype(int) - ref).max() <= 1
