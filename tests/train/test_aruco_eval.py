"""deblur-eval --task aruco: scenes are reproducible, sharp scenes decode fully, blur costs markers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deblur.train import aruco_eval


@pytest.fixture(scope="module")
def photos(data_dir):
    return aruco_eval.load_photos([data_dir / "sharp" / "kodak24"], limit=6)


def test_scenes_are_reproducible_and_markers_are_where_they_say(photos):
    name, photo = photos[0]
    a, b = aruco_eval.make_scene(photo, name, 0, 3), aruco_eval.make_scene(photo, name, 0, 3)
    assert np.array_equal(a.blurred, b.blurred) and [m.id for m in a.markers] == [m.id for m in b.markers]
    assert not np.array_equal(a.blurred, aruco_eval.make_scene(photo, name, 1, 3).blurred)
    found, _ = aruco_eval.detect(a.sharp)
    by_id = dict(found)
    for m in a.markers:  # every marker decodes in the sharp scene, at the corners we recorded
        assert m.id in by_id
        assert np.abs(by_id[m.id] - m.corners).max() < 2.0


def test_rates_sharp_perfect_blur_worse_identity_method_equals_blurred(photos):
    rates, scenes = aruco_eval.run_benchmark(photos, {"identity": lambda img: img}, seed=0, markers=3)
    assert len(scenes) == len(photos)
    assert rates["sharp"]["identification_rate"] == 1.0 and rates["sharp"]["false_detections"] == 0
    assert rates["blurred"]["identification_rate"] < 1.0  # the benchmark is not trivial
    assert rates["identity"] == rates["blurred"]


def test_cli_writes_table_json_and_panels(data_dir, tmp_path, capsys):
    from deblur.train.evaluate import main

    rc = main(["--task", "aruco", "--model", "default", "--photos", str(data_dir / "sharp" / "kodak24"), "--limit", "3",
               "--json", str(tmp_path / "a.json"), "--out", str(tmp_path / "panels")])
    out = capsys.readouterr().out
    assert rc == 0 and "| sharp | 100.0% | 100.0% | 0 |" in out and "| deblurred (default.safetensors) |" in out
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["task"] == "aruco" and data["rates"]["sharp"]["markers"] == 9
    assert len(list((tmp_path / "panels").glob("aruco_*.png"))) == 3


def test_cli_without_photos_is_one_line(capsys):
    from deblur.train.evaluate import main

    assert main(["--task", "aruco", "--model", "default"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--photos" in err[0]
