"""#17 defect 15: every training setting has a declared range, checked when the config is loaded.

Before, ``--set lr=-1``-style values gave internal errors (``steps=inf``), a divergence blamed on a loss
term (``lambda_gp=nan``), or nothing at all (``decay_start=2``, ``dropout=2``, ``out=``). Each bad value
below goes through the real CLI parser and config path (no data is read, no step is trained) and must
give exit 2 and one line naming the setting, the value and what is allowed.
"""
import dataclasses

import pytest
import yaml

from deblur.train.config import RULES, TrainConfig, check_ranges
from deblur.train.train_cli import main

# (setting, raw --set value): at least one per field of TrainConfig (checked below)
BAD = [
    ("sharp", "['']"), ("pairs", "['']"), ("val_sharp", "[' ']"), ("val_pairs", "''"),
    ("val_limit", "0"), ("val_crop", "0"), ("val_crop", "-32"),
    ("synthetic_ratio", "0"), ("synthetic_ratio", "inf"),
    ("blur_methods", "{trajectory: 0}"), ("blur_methods", "{}"), ("blur_methods", "{shaky: 1}"),
    ("blur_methods", "{trajectory: .nan}"), ("blur_methods", "{trajectory: 1, gopro: -1}"), ("blur_methods", "trajectory"),
    ("blur_max_len", "0"), ("blur_max_len", "nan"),
    ("noise_read_max", "-1"), ("noise_shot_max", "inf"),
    ("jpeg_prob", "1.5"), ("jpeg_prob", "-0.1"), ("jpeg_min_quality", "0"), ("jpeg_min_quality", "96"),
    ("kernel_bank", "-1"), ("blur_min_len", "-1"), ("blur_min_len", "nan"), ("pair_reuse", "0"),
    ("linear_light", "maybe"), ("camera_curve", "linear"),
    ("highlights", "2"), ("highlight_gain", "1"), ("noise_model", "gauss"),
    ("noise_gain_min", "0"), ("noise_gain_max", "2"), ("shake_max_step", "-1"), ("shake_pan_max", "nan"),
    ("crop", "0"), ("crop", "1.5"), ("halve", "1"), ("max_side", "-1"), ("flip", "0"), ("workers", "-1"),
    ("spec", "nope"), ("spec", "''"),
    ("dropout", "2"), ("dropout", "1"), ("dropout", "-0.5"), ("residual_init", "-1"), ("ndf", "-1"), ("n_layers_d", "0"),
    ("batch", "0"), ("steps", "0"), ("steps", "-5"), ("steps", "inf"), ("steps", "nan"), ("critic_steps", "0"),
    ("lr", "-1"), ("lr", "0"), ("lr", "inf"), ("lr", "nan"), ("lr", "true"),
    ("beta1", "1"), ("beta2", "-0.1"), ("decay_start", "2"), ("decay_start", "-0.1"),
    ("content", "ssim"), ("content_weight", "-1"), ("adv_weight", "nan"), ("lambda_gp", "nan"), ("lambda_gp", "-1"),
    ("gp", "none"), ("vgg_weights", ""), ("perceptual_after_relu", "2"), ("perceptual_imagenet_norm", "maybe"),
    ("ema", "1"), ("ema", "-0.5"), ("optimizer", "sgd"), ("weight_decay", "-1"), ("fft_weight", "inf"), ("clip_grad", "-1"),
    ("init", ""), ("amp", "on"),
    ("out", ""), ("out", "[a, b]"), ("device", ""), ("seed", "-1"), ("seed", "4294967296"),
    ("log_every", "0"), ("val_every", "0"), ("save_every", "0"), ("image_every", "0"), ("keep", "0"), ("max_rollbacks", "-1"),
    ("curves", "3"), ("tensorboard", "[]"),
]


def test_every_setting_declares_its_range_and_the_defaults_are_in_it():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RULES) == fields
    assert {key for key, _ in BAD} == fields  # the list below covers every field
    check_ranges(TrainConfig())


def _shown(key: str, raw: str) -> str:
    """The value as the error line shows it: the YAML value, coerced like the field's type where it can be."""
    value = yaml.safe_load(raw) if raw.strip() else ""
    default = getattr(TrainConfig(), key)
    if isinstance(default, float) and isinstance(value, int | float | str) and not isinstance(value, bool):
        value = float(value)  # YAML reads inf and nan as text; float() takes them
    elif isinstance(default, dict) and isinstance(value, dict):
        value = {str(k): float(v) for k, v in value.items()}
    elif isinstance(default, list) and not isinstance(value, list):
        value = [str(value)]
    return repr(value)


@pytest.mark.parametrize("key,raw", BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_bad_value_is_one_line_naming_setting_value_and_range(tmp_path, capsys, key, raw):
    rc = main(["--sharp", str(tmp_path), "--out", str(tmp_path / "r"), "--set", f"{key}={raw}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("deblur-train: error: bad value ") and "internal error" not in line, line
    assert f"training setting {key!r}" in line, line
    assert _shown(key, raw) in line, line
    assert f"allowed: {RULES[key].text}" in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag,value,key", [("--out", "", "out"), ("--steps", "0", "steps"), ("--crop", "-8", "crop"),
                                            ("--sharp", "", "sharp"), ("--workers", "-2", "workers"), ("--seed", "-1", "seed")])
def test_bad_values_from_flags(tmp_path, capsys, flag, value, key):
    args = ["--out", str(tmp_path / "r"), flag, value]
    assert main(["--sharp", str(tmp_path), *args] if flag != "--sharp" else args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{key!r}" in err[0] and f"allowed: {RULES[key].text}" in err[0], err


def test_bad_value_in_a_config_file(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("lambda_gp: .nan\nsteps: 10\n")
    assert main(["--config", str(config), "--sharp", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'lambda_gp'" in err[0] and "nan" in err[0] and "a finite number >= 0" in err[0], err
    # a later --set replaces the file's value before the check
    assert main(["--config", str(config), "--sharp", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "lambda_gp=10",
                 "--set", "steps=-1"]) == 2
    assert "'steps'" in capsys.readouterr().err


@pytest.mark.parametrize("sets,expect", [
    (["content_weight=0", "adv_weight=0"], "both 0"),
    (["blur_min_len=80"], "blur_min_len"),
    (["pair_reuse=3"], "pair_reuse must divide batch"),
    (["noise_gain_min=0.01", "noise_gain_max=0.004"], "noise_gain_min <= noise_gain_max"),
    (["highlights=0.5"], "linear-light"),
    (["max_side=16"], "max_side"),
    (["crop=30"], "multiple of 4"),
])
def test_relations_between_settings(tmp_path, capsys, sets, expect):
    args = ["--sharp", str(tmp_path), "--out", str(tmp_path / "r")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err


def test_good_values_at_the_edges_pass(tmp_path):
    from deblur.train.config import set_value, validate

    cfg = TrainConfig()
    for key, value in [("sharp", [str(tmp_path)]), ("dropout", -1), ("dropout", 0.0), ("decay_start", 1), ("decay_start", 0),
                       ("ema", 0), ("lambda_gp", 0), ("blur_methods", {"trajectory": 2, "gopro": 1}), ("seed", 2**32 - 1),
                       ("init", None), ("ndf", 0), ("max_rollbacks", 0), ("steps", "12")]:
        set_value(cfg, key, value)
        validate(cfg)
