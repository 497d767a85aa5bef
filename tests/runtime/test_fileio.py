"""Atomic writes: every failure one InputError naming the file, nothing under the final name (#17 defects 11, 12)."""
import errno
import os
import subprocess
import sys

import pytest

from deblur.runtime import bench_cli
from deblur.runtime.errors import InputError
from deblur.runtime.fileio import atomic_write_text, can_create, same_file


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match="is a folder") as e:
        atomic_write_text(tmp_path, "{}")
    assert str(tmp_path) in e.value.line()
    assert not can_create(tmp_path)


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """ENOSPC while the data goes to disk: an InputError that says so, no temp file, no final file."""
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "out.json"
    with pytest.raises(InputError, match="disk full writing this file") as e:
        atomic_write_text(target, "{}")
    assert str(target) in e.value.line()
    assert list(tmp_path.iterdir()) == []


def test_same_file_follows_links(tmp_path):
    a = tmp_path / "a"
    a.write_text("x")
    (tmp_path / "l").symlink_to(a)
    os.link(a, tmp_path / "h")
    assert same_file(a, tmp_path / "l") and same_file(a, tmp_path / "h") and not same_file(a, tmp_path / "missing")


def test_bench_json_into_a_folder_fails_before_any_timing(tmp_path, capsys):
    """#17 defect 12: `deblur-bench --json DIR` timed everything, then died with an internal error."""
    assert bench_cli.main(["--model", "default", "--json", str(tmp_path), "--no-peak"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the JSON here" in err[0] and str(tmp_path) in err[0], err


def test_video_stats_json_into_a_folder_is_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "deblur.video.cli", "--demo", "--headless", "--stats-json", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "cannot write the stats" in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
