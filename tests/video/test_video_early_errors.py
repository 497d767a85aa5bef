"""Bad input found before the first frame (#17 defect 22a): the one error line and nothing else; no model
banner, no source states, no summary of zeros and no empty stage table."""
from __future__ import annotations

import pytest
from video_helpers import assert_no_traceback, run_cli


@pytest.mark.parametrize("make, words", [
    (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", "cannot open as video"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no images in the folder"),
], ids=["not-a-video-file", "folder-without-images"])
def test_bad_input_is_only_the_error_line(tmp_path, make, words):
    bad = make(tmp_path)
    r = run_cli(["--input", bad, "--headless", "--output-save", tmp_path / "out.mkv"], cwd=tmp_path, timeout=60)
    assert_no_traceback(r.stdout, r.stderr)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("deblur-video: error:") and words in lines[0], r.stderr
    assert not (tmp_path / "out.mkv").exists()
