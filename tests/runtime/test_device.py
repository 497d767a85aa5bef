"""#17 defect 4: one device parser. `--device cuda:0` without a GPU was an internal error (video, eval, train,
Deblurrer); `--device tpu` ran on the CPU in video and crashed in train. Now one line, exit 2, everywhere."""
import subprocess
import sys

import pytest

from deblur.runtime import Deblurrer
from deblur.runtime.device import cuda_device_count, parse_device
from deblur.runtime.errors import InputError

NO_GPU = cuda_device_count() == 0


def test_parse_device_words():
    assert parse_device("cpu") == "cpu" and parse_device(" CPU ") == "cpu"
    assert parse_device("auto", allow_auto=True) == ("cpu" if NO_GPU else "cuda:0")
    for bad in ("tpu", "cuda:x", "gpu", "cuda:-1", "", "auto"):
        with pytest.raises(InputError, match="unknown device"):
            parse_device(bad)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU: the no-GPU errors cannot show here")
def test_cuda_without_a_gpu_is_one_clear_error():
    for name in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(InputError, match="no CUDA GPU visible"):
            parse_device(name)
    with pytest.raises(InputError, match="no CUDA GPU visible"):
        Deblurrer("default", device="cuda:0")


SAMPLES = ["--blur", "train/samples/blur", "--sharp", "train/samples/sharp"]


@pytest.mark.parametrize("device", ["tpu"] + (["cuda:0"] if NO_GPU else []))
@pytest.mark.parametrize("tool", ["video", "eval", "train", "bench"])
def test_every_cli_refuses_a_device_it_cannot_use(tool, device, tmp_path):
    args = {"video": ["deblur.video.cli", "--demo", "--headless", "--max-frames", "2"],
            "eval": ["deblur.train.evaluate", "--model", "default", *SAMPLES],
            "train": ["deblur.train.train_cli", "--sharp", "train/samples/sharp", "--steps", "1", "--out", str(tmp_path / "r")],
            "bench": ["deblur.runtime.bench_cli", "--model", "default", "--sizes", "64x64", "--no-peak"]}[tool]
    r = subprocess.run([sys.executable, "-m", *args, "--device", device], capture_output=True, text=True, timeout=180,
                       cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert r.returncode == 2, (r.stdout[-500:], r.stderr[-2000:])
    last = r.stderr.strip().splitlines()[-1]
    assert ("unknown device 'tpu'" if device == "tpu" else "no CUDA GPU visible") in last and "internal error" not in r.stderr


def test_loading_a_checkpoint_onto_cuda_with_a_torch_that_has_none_is_one_error():
    """The torch check behind the parser: a GPU machine with a CPU build of torch (or none here)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    from deblur.runtime.zoo import resolve_model
    from deblur.train.checkpoint import load_generator

    with pytest.raises(InputError, match="sees no CUDA GPU"):
        load_generator(resolve_model("default"), device="cuda:0")
