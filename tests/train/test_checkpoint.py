"""The checkpoint module against every file users actually end up holding.

Fixtures are made here: our own weights, a state dict in the authors' 2018 layout (built by an
independent copy of their ResnetGenerator), and the broken and hostile files of CK-2..CK-6.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deblur.runtime.errors import (
    CheckpointEmptyError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointTruncatedError,
    UnsafeCheckpointError,
    WrongModelError,
)
from deblur.runtime.spec import ModelSpec, get_spec
from deblur.train import checkpoint as ck
from deblur.train.networks import Critic, Generator

SPEC = ModelSpec("t", ngf=8, n_blocks=2)


@pytest.fixture()
def gen():
    torch.manual_seed(0)
    return Generator(SPEC).eval()


def _outputs_equal(model_a, model_b):
    x = torch.rand(1, 3, 24, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model_a(x), model_b(x))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_roundtrip(tmp_path, gen, suffix):
    path = ck.save_generator(tmp_path / f"g{suffix}", gen, SPEC, meta={"step": 7})
    model, w = ck.load_generator(path)
    assert w.spec == SPEC and w.sha256 and "deblur-edge generator" in w.layout
    assert not model.training
    _outputs_equal(gen, model)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("buffers", [False, True])
def test_authors_2018_layout(tmp_path, prefix, buffers, authors_generator):
    _AuthorsG = authors_generator
    torch.manual_seed(1)
    authors = _AuthorsG(ngf=8, n_blocks=2, track=buffers).eval()
    state = {prefix + k: v for k, v in authors.state_dict().items()}
    assert ("model.10.conv_block.6.weight" if not prefix else "module.model.10.conv_block.6.weight") in state
    assert any("running_mean" in k for k in state) == buffers
    torch.save(state, tmp_path / "latest_net_G.pth")
    model, w = ck.load_generator(tmp_path / "latest_net_G.pth")
    assert (w.spec.ngf, w.spec.n_blocks, w.spec.n_downsampling) == (8, 2, 2)
    assert ("'module.' prefix stripped" in w.layout) == bool(prefix)
    assert ("running-stat buffers dropped" in w.layout) == buffers
    reference = _AuthorsG(ngf=8, n_blocks=2, track=False).eval()
    reference.load_state_dict({k[len(prefix):]: v for k, v in state.items() if "running" not in k and "num_batches" not in k})
    _outputs_equal(reference, model)


def test_authors_full_size_infers_paper_spec(tmp_path):
    state = Generator(get_spec("deblurgan")).state_dict()
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "latest_net_G.pth")
    assert ck.load_generator_weights(tmp_path / "latest_net_G.pth").spec.name == "deblurgan"


def test_training_checkpoint_prefers_ema(tmp_path, gen):
    ema = Generator(SPEC).eval()
    ck.save_training_state(tmp_path / "ckpt.pth", {"g": gen.state_dict(), "g_ema": ema.state_dict(), "spec": SPEC.to_dict(), "step": 3})
    m, w = ck.load_generator(tmp_path / "ckpt.pth")
    assert "EMA" in w.layout
    _outputs_equal(ema, m)
    m, w = ck.load_generator(tmp_path / "ckpt.pth", prefer_ema=False)
    assert "raw" in w.layout
    _outputs_equal(gen, m)


def test_wrapped_state_dict(tmp_path, gen):
    torch.save({"state_dict": gen.state_dict(), "epoch": 3}, tmp_path / "w.pth")
    _outputs_equal(gen, ck.load_generator(tmp_path / "w.pth")[0])


def test_spec_contradicting_file_is_refused(tmp_path, gen):
    ck.save_generator(tmp_path / "g.pth", gen, SPEC)
    with pytest.raises(CheckpointMismatchError, match="was saved with spec 't'"):
        ck.load_generator_weights(tmp_path / "g.pth", spec="deblurgan-nano")


def test_width_changed_generator_lists_mismatches(tmp_path):
    state = Generator(ModelSpec("w", ngf=8, n_blocks=12)).state_dict()
    torch.save(state, tmp_path / "g.pth")
    with pytest.raises(CheckpointMismatchError) as e:
        ck.load_generator_weights(tmp_path / "g.pth", spec=ModelSpec("n", ngf=16, n_blocks=3))
    msg = str(e.value)
    assert "wrongly shaped" in msg and "file (8, 3, 7, 7) vs model (16, 3, 7, 7)" in msg
    assert "unexpected" in msg and "and " in msg and "more" in msg  # capped at 10, with the count of the rest
    assert "layouts tried" in msg and "\n" not in msg


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["input"], ["output"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(helper.make_model(graph, producer_name="pytorch"), path)
    return path


def _bad_files(tmp_path: Path, gen) -> dict[str, tuple[Path, type]]:
    good = ck.save_generator(tmp_path / "good.pth", gen, SPEC).read_bytes()
    st = ck.save_generator(tmp_path / "good.safetensors", gen, SPEC).read_bytes()
    torch.save({"model": Critic().state_dict()}, tmp_path / "critic_in_wrapper.pth")
    torch.save(Critic().state_dict(), tmp_path / "latest_net_D.pth")
    rng = np.random.default_rng(0)
    return {
        "missing": (tmp_path / "nope.pth", CheckpointNotFoundError),
        "empty": (_write(tmp_path / "empty.pth", b""), CheckpointEmptyError),
        "one byte": (_write(tmp_path / "one.pth", good[:1]), CheckpointFormatError),
        "half": (_write(tmp_path / "half.pth", good[: len(good) // 2]), CheckpointTruncatedError),
        "all but last byte": (_write(tmp_path / "cut.pth", good[:-1]), CheckpointTruncatedError),
        "random bytes": (_write(tmp_path / "random.pth", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()), CheckpointFormatError),
        "html": (_write(tmp_path / "page.pth", b"\n<!DOCTYPE html><html><body>Sign in</body></html>"), CheckpointFormatError),
        "onnx renamed": (_write(tmp_path / "model.pth", _tiny_onnx(tmp_path / "m.onnx").read_bytes()), CheckpointFormatError),
        "engine renamed": (_write(tmp_path / "e.pth", b"\x00" * 12 + b"ftrt" + b"\x00" * 100), CheckpointFormatError),
        "safetensors truncated": (_write(tmp_path / "cut.safetensors", st[: len(st) // 2]), CheckpointTruncatedError),
        "critic": (tmp_path / "latest_net_D.pth", WrongModelError),
        "critic in wrapper": (tmp_path / "critic_in_wrapper.pth", WrongModelError),
        "folder": (tmp_path, CheckpointFormatError),
    }


def test_every_bad_file_gets_a_typed_error_fast(tmp_path, gen):
    for label, (path, err) in _bad_files(tmp_path, gen).items():
        t0 = time.perf_counter()
        with pytest.raises(err) as e:
            ck.load_generator_weights(path)
        assert time.perf_counter() - t0 < 1.0, label
        msg = str(e.value)
        assert str(path) in msg and "\n" not in msg, label
        assert ";" in msg, f"{label}: message must say what to do: {msg}"


def test_cli_bad_checkpoints_exit_2_with_one_line(tmp_path, gen, capsys):
    from deblur.train.evaluate import main

    blur = tmp_path / "blur"
    blur.mkdir()
    import cv2

    cv2.imwrite(str(blur / "a.png"), np.zeros((16, 16, 3), np.uint8))
    for label, (path, _) in _bad_files(tmp_path, gen).items():
        rc = main(["--model", str(path), "--blur", str(blur), "--sharp", str(blur)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, label
        assert len(err) == 1 and err[0].startswith("deblur-eval: error: "), (label, err)


_EVIL = """
import os, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))
torch.save({{"model.1.weight": Evil()}}, {path!r})
"""


def test_code_running_pickle_is_refused_even_with_force_env(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    subprocess.run([sys.executable, "-c", _EVIL.format(marker=marker, path=str(evil))], check=True)
    assert evil.exists() and not marker.exists()
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    code = (
        "import sys\nfrom deblur.train.checkpoint import load_generator_weights\n"
        "from deblur.runtime.errors import UnsafeCheckpointError\n"
        f"try:\n    load_generator_weights({str(evil)!r})\nexcept UnsafeCheckpointError as e:\n"
        "    print(e); sys.exit(0)\nsys.exit(1)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "refused" in r.stdout and "posix.system" in r.stdout
    assert not marker.exists(), "the pickle's code ran"
    r = subprocess.run([sys.executable, "-m", "deblur.train.evaluate", "--model", str(evil), "--blur", str(tmp_path),
                        "--sharp", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        ck.load_generator_weights(evil)


def test_only_the_checkpoint_module_calls_torch_load():
    repo = Path(__file__).resolve().parents[2]
    allowed = {repo / "train" / "checkpoint.py", repo / "train" / "losses.py"}  # losses: torchvision's VGG file
    for path in repo.glob("*/**/*.py"):
        if "tests" in path.parts or ".venv" in path.parts or path in allowed:
            continue
        assert "torch.load(" not in path.read_text(), f"{path} calls torch.load; use deblur.train.checkpoint"
    for path in allowed:
        for line in path.read_text().splitlines():
            if "torch.load(" in line and not line.lstrip().startswith("#"):
                assert "weights_only=True" in line, f"{path}: {line.strip()}"
