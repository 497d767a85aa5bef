"""What a person sees: side-by-side or split views, and the OpenCV window (FPS in its title).

The window needs a display and an OpenCV with a GUI; ``window_unavailable`` says which is
missing, so the tool can say so once and carry on headless.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

VIEWS = ("side-by-side", "split", "output")


def _label(img: np.ndarray, text: str, x: int) -> None:
    scale = max(0.4, img.shape[0] / 720)
    org = (x + 8, int(22 * scale) + 6)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def compose(blurred: np.ndarray, sharp: np.ndarray, view: str, labels: bool = True) -> np.ndarray:
    """``output``: the deblurred frame itself; ``side-by-side``: input | output (twice as wide);
    ``split``: the left half of the input beside the right half of the output, with a divider."""
    if view == "output":
        return sharp
    if view == "side-by-side":
        out = np.hstack([blurred, sharp])
        if labels:
            _label(out, "input", 0)
            _label(out, "deblurred", blurred.shape[1])
        return out
    if view != "split":
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    w = blurred.shape[1]
    out = sharp.copy()
    out[:, : w // 2] = blurred[:, : w // 2]
    out[:, max(0, w // 2 - 1) : w // 2 + 1] = 255
    if labels:
        _label(out, "input", 0)
        _label(out, "deblurred", w // 2)
    return out


def window_unavailable() -> str | None:
    """Why no window can open here, or None."""
    if _gui_backend() in ("", "NONE"):
        return "this OpenCV has no GUI (opencv-python-headless); pip install opencv-python for a window"
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    return None


def _gui_backend() -> str:
    """The ``GUI:`` entry of OpenCV's build information (NONE in the headless wheels)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip()
    return ""


class Window:
    """One OpenCV window; ``show`` returns False once the user pressed q or Esc or closed it."""

    def __init__(self, name: str = "deblur-video"):
        self.name = name
        cv2.namedWindow(name, cv2.WINDOW_NORMAL)

    def show(self, img: np.ndarray, title: str) -> bool:
        cv2.imshow(self.name, img)
        cv2.setWindowTitle(self.name, title)
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) < 1
        return key not in (ord("q"), 27) and not closed

    def close(self) -> None:
        cv2.destroyWindow(self.name)
