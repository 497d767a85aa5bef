"""deblur-gst-env: the shell exports that let ``gst-launch-1.0 ... ! deblur ! ...`` find the element and the model.

``eval "$(deblur-gst-env)"`` in a plain shell or an activated venv, with a regular or an editable
install. Why each export is needed (measured on Debian 12, research/robotics.md):

- ``GST_PLUGIN_PATH``: the folder holding ``python/deblur_element.py``; GStreamer's Python plugin
  loader (``libgstpython.so``) scans ``<dir>/python/*.py``.
- ``PYTHONPATH``: that loader embeds the SYSTEM Python (Debian's ``libpython3.11``), which knows
  nothing of the venv: it needs the venv's site-packages (numpy, onnxruntime, deblur) in front.
- ``DEBLUR_GST_SITE_PACKAGES``: the embedded Python reads no ``.pth`` file on PYTHONPATH, and an
  editable install is one (setuptools' ``__editable__`` finder maps ``deblur.*`` onto the source
  folders, which no PYTHONPATH entry can express): the element runs these folders' ``.pth`` files.
- ``PATH``: the embedded Python finds its home through the first ``python3`` on PATH; a venv's (or
  any other installation's) ``python3`` ahead of the system one makes it load the wrong standard
  library and fail with "pygobject initialization failed". Such folders move behind the system one.

Missing system pieces are named on stderr with their Debian packages (exit code 2; the exports are
printed all the same).
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent / "gst"
SITE_ENV = "DEBLUR_GST_SITE_PACKAGES"
PLUGIN_DIRS = ("/usr/lib/*/gstreamer-1.0", "/usr/lib/gstreamer-1.0", "/usr/lib64/gstreamer-1.0",
               "/usr/local/lib/*/gstreamer-1.0", "/usr/local/lib/gstreamer-1.0")


def site_dirs() -> list[str]:
    """This interpreter's site-packages folders (purelib, platlib), existing ones only."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(p for p in (paths["purelib"], paths["platlib"]) if os.path.isdir(p)))


def pth_dirs(sites: list[str]) -> list[str]:
    """Folders that ``.pth`` files in ``sites`` add as plain lines (old-style editable installs, src layouts)."""
    found: list[str] = []
    for folder in sites:
        for pth in sorted(glob.glob(os.path.join(folder, "*.pth"))):
            try:
                lines = Path(pth).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                line = line.strip()
                if not line or line.startswith(("#", "import ", "import\t")):
                    continue
                path = line if os.path.isabs(line) else os.path.join(folder, line)
                if os.path.isdir(path):
                    found.append(os.path.normpath(path))
    return found


def loader_plugin() -> Path | None:
    """GStreamer's Python plugin loader, ``libgstpython*.so``, where GStreamer looks for system plugins."""
    dirs = [d for var in ("GST_PLUGIN_SYSTEM_PATH_1_0", "GST_PLUGIN_SYSTEM_PATH")
            for d in os.environ.get(var, "").split(os.pathsep) if d]
    dirs += [d for pattern in PLUGIN_DIRS for d in sorted(glob.glob(pattern))]
    for d in dirs:
        hits = sorted(glob.glob(os.path.join(d, "libgstpython*.so")))
        if hits:
            return Path(hits[0])
    return None


def loader_python(plugin: Path) -> tuple[int, int] | None:
    """The Python version the loader embeds: the ``libpython3.X`` named inside the plugin."""
    try:
        match = re.search(rb"libpython3\.(\d+)", plugin.read_bytes())
    except OSError:
        return None
    return (3, int(match.group(1))) if match else None


def system_gi() -> bool:
    """PyGObject with GStreamer's overrides for the system Python (Debian python3-gst-1.0)."""
    patterns = ("/usr/lib/python3*/dist-packages/gi/overrides/Gst.py", "/usr/lib/python3*/site-packages/gi/overrides/Gst.py",
                "/usr/lib64/python3*/site-packages/gi/overrides/Gst.py")
    return any(glob.glob(p) for p in patterns)


def _python_home(folder: str) -> bool:
    """Whether Python's getpath would take a ``python3`` in ``folder`` as its own home (a venv or an installation)."""
    parent = os.path.dirname(os.path.abspath(folder))
    return (os.path.exists(os.path.join(folder, "pyvenv.cfg")) or os.path.exists(os.path.join(parent, "pyvenv.cfg"))
            or bool(glob.glob(os.path.join(parent, "lib", "python3*", "os.py"))))


def loader_path(path: str, system_bin: str = "/usr/bin") -> tuple[str, list[str]]:
    """PATH with every folder whose ``python3`` would capture the embedded Python moved behind ``system_bin``."""
    parts = [p for p in path.split(os.pathsep) if p]
    real = [os.path.realpath(p) for p in parts]
    target = os.path.realpath(system_bin)
    if target not in real:
        return path, []
    system = parts[real.index(target)]  # /bin or /usr/bin, whichever comes first (merged /usr)
    before = parts[: real.index(target)]
    moved = [p for p in before if os.path.exists(os.path.join(p, "python3")) and _python_home(p)]
    if not moved:
        return path, []
    kept = [p for p in parts if p not in moved]
    at = kept.index(system) + 1
    return os.pathsep.join(kept[:at] + moved + kept[at:]), moved


def _merge(first: list[str], current: str) -> str:
    """``first`` then the entries of ``current`` not already there (running the command twice changes nothing)."""
    return os.pathsep.join(dict.fromkeys(first + [p for p in current.split(os.pathsep) if p]))


def exports(env: dict[str, str] | os._Environ = os.environ) -> tuple[dict[str, str], list[str]]:
    """The variables to export, and the lines to say on stderr."""
    sites = site_dirs()
    out = {"GST_PLUGIN_PATH": _merge([str(PLUGIN_DIR)], env.get("GST_PLUGIN_PATH", "")),
           "PYTHONPATH": _merge(sites + pth_dirs(sites), env.get("PYTHONPATH", "")),
           SITE_ENV: os.pathsep.join(sites)}
    notes: list[str] = []
    path, moved = loader_path(env.get("PATH", ""))
    if moved:
        out["PATH"] = path
        notes.append(f"deblur-gst-env: moved {', '.join(moved)} behind /usr/bin on PATH: GStreamer's embedded Python finds "
                     "its home through the first python3 on PATH (in this shell, run this environment's Python as "
                     f"{sys.executable})")
    return out, notes


def missing() -> list[str]:
    """One line per system piece that is missing, naming its Debian package."""
    lines = []
    if shutil.which("gst-launch-1.0") is None:
        lines.append("gst-launch-1.0 not found: apt-get install gstreamer1.0-tools")
    plugin = loader_plugin()
    if plugin is None:
        lines.append("GStreamer's Python plugin loader (libgstpython.so) not found: "
                     "apt-get install gstreamer1.0-python3-plugin-loader python3-gst-1.0")
    else:
        version = loader_python(plugin)
        if version is not None and version != sys.version_info[:2]:
            lines.append(f"{plugin} embeds Python {version[0]}.{version[1]} but this environment is Python "
                         f"{sys.version_info[0]}.{sys.version_info[1]}: its compiled wheels (numpy, onnxruntime) will not "
                         f"import there; install deblur-edge into a venv made with python{version[0]}.{version[1]}")
    if not system_gi():
        lines.append("PyGObject with GStreamer overrides not found for the system Python: apt-get install python3-gst-1.0")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deblur-gst-env", description=__doc__.split("\n\n")[0],
                                     epilog='usage: eval "$(deblur-gst-env)"; then gst-launch-1.0 ... ! deblur model=default ! ...')
    parser.parse_args(argv)
    values, notes = exports()
    for name, value in values.items():
        print(f"export {name}={shlex.quote(value)}")
    problems = missing()
    for line in notes + [f"deblur-gst-env: {p}" for p in problems]:
        print(line, file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
