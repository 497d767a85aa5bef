"""Run a command with a small tmpfs (or a read-only one) mounted over a folder, in a private mount
namespace: a real full disk and a real read-only file system, without touching the machine's mounts.

As root ``unshare --mount``; otherwise a user namespace as well (``unshare -rm``). Where neither is
allowed (some containers), ``available()`` says why and the tests skip with that reason.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_SCRIPT = 'mount -t tmpfs -o "size=$1" tmpfs "$2" || exit 97; [ "$3" = ro ] && { mount -o remount,ro "$2" || exit 98; }; ' \
          'shift 3; exec "$@"'


def _unshare() -> list[str]:
    return ["unshare", "--mount", "--propagation", "private"] + ([] if os.geteuid() == 0 else ["--map-root-user"])


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None when a private tmpfs can be mounted here, else the reason it cannot."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as d:
        r = run(["true"], Path(d), "64k", ro=True, timeout=30)
    return None if r.returncode == 0 else f"cannot mount a private tmpfs here (unshare exit {r.returncode}: {r.stderr.strip()[:120]})"


def run(cmd: list[str], folder: Path, size: str, ro: bool = False, timeout: float = 300,
        env: dict | None = None, prefill: int = 0) -> subprocess.CompletedProcess:
    """``cmd`` with a ``size`` tmpfs over ``folder`` (read-only with ``ro``; ``prefill`` bytes written first)."""
    script = _SCRIPT
    if prefill:
        script = script.replace("shift 3;", f'head -c {prefill} /dev/zero > "$2/.fill" 2>/dev/null; shift 3;')
    return subprocess.run([*_unshare(), "sh", "-c", script, "sh", size, str(folder), "ro" if ro else "rw", *cmd],
                          capture_output=True, text=True, timeout=timeout, env=env)
