import csv
import json
import subprocess
import sys

import cv2
import pytest
import torch

from deblur.runtime.images import read_rgb
from deblur.runtime.spec import ModelSpec
from deblur.train.checkpoint import save_generator
from deblur.train.evaluate import main
from deblur.train.networks import Generator

SPEC = ModelSpec("t", ngf=4, n_blocks=1)


@pytest.fixture()
def folders(tmp_path, data_dir):
    blur, sharp = tmp_path / "blur", tmp_path / "sharp"
    blur.mkdir()
    sharp.mkdir()
    srcs = sorted((data_dir / "sharp" / "kodak24").glob("*.png"))[:2]
    for i, p in enumerate(srcs):
        img = cv2.imread(str(p))[:61, :83]  # odd size: padding and cropping are exercised
        cv2.imwrite(str(sharp / f"im{i}.png"), img)
        cv2.imwrite(str(blur / f"im{i}.png"), cv2.blur(img, (5, 1)))
    gray = cv2.imread(str(srcs[0]), cv2.IMREAD_GRAYSCALE)[:40, :40]
    cv2.imwrite(str(sharp / "gray.png"), gray)
    cv2.imwrite(str(blur / "gray.jpg"), gray)  # matched by stem, gray read as RGB
    cv2.imwrite(str(blur / "orphan.png"), gray)  # no sharp twin: warned and skipped
    return blur, sharp


def _identity_model(path):
    torch.manual_seed(0)
    g = Generator(SPEC)
    last = g.model[-2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    return save_generator(path, g, SPEC)


def test_eval_identity_model_matches_identity_baseline(tmp_path, folders, capsys):
    blur, sharp = folders
    model = _identity_model(tmp_path / "g.safetensors")
    out, js = tmp_path / "out", tmp_path / "e.json"
    assert main(["--model", str(model), "--blur", str(blur), "--sharp", str(sharp), "--out", str(out), "--json", str(js)]) == 0
    table = capsys.readouterr().out
    assert "| identity (blurred input) |" in table and "| gain over identity | +0.00 | +0.0000 |" in table
    summary = json.loads(js.read_text())
    assert set(summary) == {"model", "identity", "images", "exact"} and summary["images"] == 3 and summary["exact"] == []
    assert summary["model"] == summary["identity"]  # a zero residual returns the input exactly
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("image,psnr_model") and len(rows) == 4
    panel = read_rgb(out / "im0_side_by_side.png")
    assert panel.shape[1] > 3 * 83 and panel.shape[0] > 61


def test_eval_random_model_is_worse_than_identity(tmp_path, folders):
    blur, sharp = folders
    torch.manual_seed(0)
    model = save_generator(tmp_path / "g.pth", Generator(SPEC), SPEC)
    js = tmp_path / "e.json"
    assert main(["--model", str(model), "--blur", str(blur), "--sharp", str(sharp), "--json", str(js)]) == 0
    s = json.loads(js.read_text())
    assert s["model"]["psnr"] < s["identity"]["psnr"]


def test_eval_bad_folders(tmp_path, folders, capsys):
    blur, sharp = folders
    model = _identity_model(tmp_path / "g.pth")
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["--blur", str(tmp_path / "nope"), "--sharp", str(sharp)],
                 ["--blur", str(empty), "--sharp", str(sharp)],
                 ["--blur", str(blur), "--sharp", str(empty)],
                 ["--blur", str(blur), "--sharp", str(sharp), "--spec", "no-such-spec"]):
        assert main(["--model", str(model), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error:" in err[0], err


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_eval_limit_below_one_is_refused(tmp_path, folders, capsys, limit):
    """#17 defect 18: --limit -1 silently dropped the last pair, --limit 0 said "see the warnings above" with none."""
    blur, sharp = folders
    model = _identity_model(tmp_path / "g.pth")
    assert main(["--model", str(model), "--blur", str(blur), "--sharp", str(sharp), "--limit", limit]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--limit must be at least 1, got {limit}" in err[0], err


def test_eval_an_identical_pair_is_left_out_of_every_column(tmp_path, folders):
    """#17 defect 6: infinities were dropped per column, so model and identity were averaged over different
    images (it reported a gain while the model was worse on every image). Now one image set for all."""
    blur, sharp = folders
    same = cv2.imread(str(sharp / "im0.png"))
    cv2.imwrite(str(sharp / "same.png"), same)
    cv2.imwrite(str(blur / "same.png"), same)  # blurred == sharp: identity PSNR is infinite
    torch.manual_seed(1)
    model = save_generator(tmp_path / "g.pth", Generator(SPEC), SPEC)  # random: changes every image
    out, js = tmp_path / "o", tmp_path / "e.json"
    assert main(["--model", str(model), "--blur", str(blur), "--sharp", str(sharp), "--out", str(out), "--json", str(js)]) == 0
    s = json.loads(js.read_text())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    kept = [r for r in rows if r["image"] != "same.png"]
    assert s["exact"] == ["same.png"] and s["images"] == len(kept) == 3
    assert s["model"]["psnr"] == pytest.approx(sum(float(r["psnr_model"]) for r in kept) / 3, abs=1e-3)
    assert s["identity"]["psnr"] == pytest.approx(sum(float(r["psnr_identity"]) for r in kept) / 3, abs=1e-3)


def test_cli_conventions():
    for flag, rc in (("--help", 0), ("--version", 0)):
        r = subprocess.run([sys.executable, "-m", "deblur.train.evaluate", flag], capture_output=True, text=True, timeout=60)
        assert r.returncode == rc
    assert "--log-level" in r.stdout or "deblur-eval" in r.stdout
    r = subprocess.run([sys.executable, "-m", "deblur.train.evaluate", "--help"], capture_output=True, text=True, timeout=60)
    assert "examples:" in r.stdout and "--debug" in r.stdout and "SSIM" in r.stdout
