"""Flat frames come back unchanged on every backend (#17 defect 20: a black 640x360 frame differed by
13/255 between ONNX Runtime and torch, a grey 1x1 by 20/255: InstanceNorm amplifying float rounding)."""
from __future__ import annotations

import numpy as np
import pytest

from deblur.runtime.deblurrer import Deblurrer
from deblur.runtime.frames import is_flat

BACKENDS = ["torch", "onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def runners():
    out = {}
    for b in BACKENDS:
        pytest.importorskip({"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}[b])
        out[b] = Deblurrer("default", backend=b)
    return out


FLAT = [
    ("black 640x360", np.zeros((360, 640, 3), np.uint8)),
    ("grey 640x360", np.full((360, 640, 3), 128, np.uint8)),
    ("1x1", np.full((1, 1, 3), 77, np.uint8)),
    ("4x4", np.full((4, 4, 3), 200, np.uint8)),
    ("one pixel one level up", np.pad(np.ones((1, 1, 3), np.uint8), ((100, 259), (100, 539), (0, 0)))),
    ("gray uint16", np.full((50, 70), 40000, np.uint16)),
    ("float32", np.full((33, 45, 3), 0.25, np.float32)),
    ("BGRA, alpha varies", np.dstack([np.zeros((40, 40, 3), np.uint8), np.arange(1600, dtype=np.uint8).reshape(40, 40)])),
]


@pytest.mark.parametrize("name,frame", FLAT, ids=[n for n, _ in FLAT])
def test_flat_frames_unchanged_on_every_backend(runners, name, frame):
    assert is_flat(frame)
    for b, d in runners.items():
        out = d(frame)
        assert out.dtype == frame.dtype and out.shape == frame.shape
        np.testing.assert_array_equal(out, frame, err_msg=f"{b} on {name}")


def test_structure_just_above_the_threshold_still_runs_and_backends_agree(runners):
    frame = np.clip(np.random.default_rng(0).normal(60, 1.5, (360, 640, 3)), 0, 255).astype(np.uint8)
    assert not is_flat(frame)
    outs = {b: d(frame).astype(int) for b, d in runners.items()}
    assert (outs["onnxruntime"] != frame).any()  # the model ran
    for b in BACKENDS[1:]:
        assert np.abs(outs[b] - outs["torch"]).max() <= 1, b


def test_mixed_batch_keeps_order_and_runs_only_the_rest(runners):
    d = runners["onnxruntime"]
    photo = np.random.default_rng(1).integers(0, 256, (64, 80, 3), np.uint8)
    black = np.zeros_like(photo)
    out = d.batch([black, photo, black])
    np.testing.assert_array_equal(out[0], black)
    np.testing.assert_array_equal(out[2], black)
    np.testing.assert_array_equal(out[1], d(photo))


def test_invalid_flat_frames_are_still_refused(runners):
    from deblur.runtime.errors import InputError

    with pytest.raises(InputError, match="0, 1"):
        runners["onnxruntime"](np.full((8, 8, 3), 200.0, np.float32))  # flat, but 0..255 data in a float frame


def test_gate_skips_flat_parity_images(tmp_path, caplog):
    import cv2

    from deblur.export.pipeline import load_parity_images
    from deblur.runtime.errors import InputError

    cv2.imwrite(str(tmp_path / "dot.png"), np.full((1, 1, 3), 90, np.uint8))
    names = [n for n, _ in load_parity_images(tmp_path)]
    assert "dot.png" not in names and names  # the bundled photos remain
    assert "dot.png is flat" in caplog.text
    with pytest.raises(InputError, match="not flat"):
        from deblur.export import pipeline

        old = pipeline.PARITY_IMAGES
        try:
            pipeline.PARITY_IMAGES = tmp_path / "none"
            (tmp_path / "none").mkdir()
            load_parity_images(tmp_path)
        finally:
            pipeline.PARITY_IMAGES = old
