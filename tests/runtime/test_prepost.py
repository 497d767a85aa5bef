"""One conversion between pixels and [-1, 1], one padding rule, one size parser: every path bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deblur.runtime.errors import InputError
from deblur.runtime.frames import FrameInfo, postprocess, preprocess
from deblur.runtime.prepost import U8_TO_UNIT, to_tensor, to_uint8, unit_to_u8
from deblur.runtime.prepost_torch import tensor_post, tensor_pre
from deblur.runtime.shapes import padded_size, padding, parse_hw, parse_hw_list, round_up


def _near_ties(n: int = 400_000) -> np.ndarray:
    """Model outputs whose 127.5 y + 127.5 lands within a few ulps of every .5 tie, plus plain values."""
    rng = np.random.default_rng(0)
    k = rng.integers(0, 255, n)
    y = ((k + 0.5 - 127.5) / 127.5).astype(np.float32)
    y = (y.view(np.int32) + rng.integers(-3, 4, n).astype(np.int32)).view(np.float32)
    y = np.concatenate([y[np.isfinite(y)], rng.uniform(-1.2, 1.2, n).astype(np.float32)])
    return y[: y.size // 3 * 3]


def test_reference_table_is_the_formula():
    x = np.arange(256, dtype=np.float32)
    assert np.array_equal(U8_TO_UNIT, x * np.float32(1 / 127.5) - np.float32(1))
    assert U8_TO_UNIT[0] == -1 and U8_TO_UNIT[255] == 1
    assert np.array_equal(unit_to_u8(U8_TO_UNIT), np.arange(256))  # uint8 round trips are exact


def test_opencv_fast_path_equals_the_reference_at_ties():
    y = _near_ties().reshape(1, 3, 1, -1)
    w = y.shape[3]
    fast = postprocess(y, FrameInfo(1, w, (1, w, 3), np.dtype(np.uint8), False, True, None))
    assert np.array_equal(fast, to_uint8(y, 1, w))


def test_opencv_pre_equals_the_reference():
    frame = np.random.default_rng(1).integers(0, 256, (37, 53, 3), np.uint8)
    for multiple, min_size in [(4, 8), (8, 16)]:
        fast, _ = preprocess(frame, multiple, min_size, rgb=True)
        assert np.array_equal(fast, to_tensor(frame, multiple, min_size))


@pytest.mark.parametrize("hw", [(37, 53), (3, 5), (1, 1), (16, 16)])
@pytest.mark.parametrize("rgb", [True, False])
def test_tensor_path_equals_the_reference(hw, rgb):
    """The torch ops Deblurrer runs on CUDA frames, checked here on CPU tensors: bit for bit."""
    frame = np.random.default_rng(2).integers(0, 256, (*hw, 3), np.uint8)
    x = tensor_pre(torch.from_numpy(frame), rgb, 4, 8).numpy()
    ref = to_tensor(np.ascontiguousarray(frame if rgb else frame[..., ::-1]), 4, 8)
    assert np.array_equal(x, ref)
    y = _near_ties()[: 3 * x.shape[2] * x.shape[3]].reshape(x.shape)
    out = tensor_post(torch.from_numpy(y), *hw, rgb).numpy()
    want = to_uint8(y, *hw)
    assert np.array_equal(out, want if rgb else want[..., ::-1])


def test_one_padding_rule():
    assert round_up(37, 8) == 40 and round_up(40, 8) == 40
    assert padded_size(3, 37, 4, 8) == (8, 40)
    assert padding(37, 53, 8, 16) == (3, 3)
    assert padding(5, 5, 4, 0, size=(8, 12)) == (3, 7)


@pytest.mark.parametrize("text,want", [("720x1280", (720, 1280)), (" 1X2 ", (1, 2))])
def test_parse_hw(text, want):
    assert parse_hw(text) == want


@pytest.mark.parametrize("text", ["720", "0x5", "axb", "1x2x3", "-1x4", ""])
def test_parse_hw_refuses(text):
    with pytest.raises(InputError, match="--static"):
        parse_hw(text, "--static")


def test_parse_hw_list():
    assert parse_hw_list("360x640,720x1280") == [(360, 640), (720, 1280)]
    with pytest.raises(InputError, match="--sizes"):
        parse_hw_list("360x640,", "--sizes")
