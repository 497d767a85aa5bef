"""ArUco markers through motion blur: the paper's downstream test, in a form that matters to robots.

The paper (section 6.3) runs YOLO on blurred, deblurred and sharp GoPro frames. Offline and
closer to what a robot does with a camera, this benchmark renders markers of OpenCV's
``DICT_5X5_100`` into held-out photos (random place, size 40..90 px, rotation, with a white quiet
zone), blurs each scene with the project's synthesiser (random trajectories and GoPro-style
camera shake, 2:1), and runs OpenCV's ``ArucoDetector`` (default parameters) on the sharp, the
blurred and the deblurred image. A marker counts as

- detected: the detector found a quad (identified or rejected) whose centre is within a quarter
  of the marker's side of the true centre;
- identified: it was decoded there with the right id.

False detections are decoded markers with no marker of that id at that place. Every scene comes
from ``rng_for(seed, photo name)``, so the benchmark is the same set on every run.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deblur.runtime.errors import InputError
from deblur.runtime.images import list_images, read_rgb
from deblur.train.blur_io import rng_for
from deblur.train.images import fit_long_side, spread_evenly
from deblur.train.psf import TrajectoryParams
from deblur.train.shake import make_pair

log = logging.getLogger("deblur")
DICTIONARY = cv2.aruco.DICT_5X5_100


@dataclass(frozen=True)
class Marker:
    id: int
    corners: np.ndarray  # 4 x 2 float, image px

    @property
    def centre(self) -> np.ndarray:
        return self.corners.mean(axis=0)

    @property
    def side(self) -> float:
        return float(np.mean(np.linalg.norm(self.corners - np.roll(self.corners, 1, axis=0), axis=1)))


@dataclass
class Scene:
    name: str
    sharp: np.ndarray  # uint8 RGB
    blurred: np.ndarray
    markers: list[Marker]


def _place(img: np.ndarray, marker_id: int, rng: np.random.Generator, taken: list[np.ndarray],
           dictionary: Any) -> Marker | None:
    """Warp one marker (with a one-module white border) into ``img`` where it overlaps no other."""
    h, w = img.shape[:2]
    side = float(rng.uniform(40, 90))
    pix = 7 * 10  # 5x5 bits + black border = 7 modules, 10 px each
    tile = np.full((pix + 20, pix + 20), 255, np.uint8)
    tile[10:-10, 10:-10] = cv2.aruco.generateImageMarker(dictionary, marker_id, pix)
    total = side * tile.shape[0] / pix  # the quiet zone included
    for _ in range(20):
        c = rng.uniform([total, total], [w - total, h - total]) if w > 2 * total and h > 2 * total else None
        if c is None:
            return None
        if all(np.linalg.norm(c - t) > total * 1.5 for t in taken):
            break
    else:
        return None
    angle = float(rng.uniform(0, 360))
    s = total / tile.shape[0]
    rot = cv2.getRotationMatrix2D((tile.shape[1] / 2, tile.shape[0] / 2), angle, s)
    rot[:, 2] += c - np.array([tile.shape[1] / 2, tile.shape[0] / 2])
    warped = cv2.warpAffine(tile, rot, (w, h), flags=cv2.INTER_AREA, borderValue=0)
    mask = cv2.warpAffine(np.full_like(tile, 255), rot, (w, h), flags=cv2.INTER_AREA, borderValue=0).astype(np.float32) / 255
    img[:] = np.rint(img * (1 - mask[..., None]) + warped[..., None] * mask[..., None]).astype(np.uint8)
    inner = np.array([[10, 10], [10 + pix, 10], [10 + pix, 10 + pix], [10, 10 + pix]], np.float64)
    corners = (np.hstack([inner, np.ones((4, 1))]) @ rot.T).astype(np.float32)
    taken.append(c)
    return Marker(marker_id, corners)


def make_scene(photo: np.ndarray, name: str, seed: int, markers: int, max_len: float = 32.0) -> Scene:
    """Markers into a copy of ``photo``, then one blur: trajectory (2/3) or GoPro-style shake (1/3)."""
    rng = rng_for(seed, name)
    dictionary = cv2.aruco.getPredefinedDictionary(DICTIONARY)
    img = np.ascontiguousarray(photo.copy())
    ids = rng.choice(100, size=markers, replace=False)
    placed, taken = [], []
    for i in ids:
        m = _place(img, int(i), rng, taken, dictionary)
        if m is not None:
            placed.append(m)
    method = "trajectory" if rng.random() < 2 / 3 else "gopro"
    blurred, sharp = make_pair(img, rng, method, TrajectoryParams(max_len=max_len) if method == "trajectory" else None)
    return Scene(name, sharp, blurred, placed)


def detect(img_rgb: np.ndarray) -> tuple[list[tuple[int, np.ndarray]], list[np.ndarray]]:
    """(decoded markers as (id, 4x2 corners), rejected candidate quads) from OpenCV's detector."""
    gray = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2GRAY)
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(DICTIONARY), cv2.aruco.DetectorParameters())
    corners, ids, rejected = detector.detectMarkers(gray)
    found = [(int(i), c.reshape(4, 2)) for c, i in zip(corners, ids.ravel())] if ids is not None else []
    return found, [r.reshape(4, 2) for r in rejected]


def near(quad: np.ndarray, m: Marker) -> bool:
    """A quad found at marker ``m``'s place: centres within a quarter of its side."""
    return bool(np.linalg.norm(quad.mean(axis=0) - m.centre) <= m.side / 4)


def score(img_rgb: np.ndarray, scene: Scene) -> dict[str, int]:
    """Counts of markers detected and identified in ``img_rgb``, and false decodes."""
    found, rejected = detect(img_rgb)
    detected = identified = 0
    for m in scene.markers:
        ok_id = any(i == m.id and near(q, m) for i, q in found)
        identified += ok_id
        detected += ok_id or any(near(q, m) for _, q in found) or any(near(q, m) for q in rejected)
    false = sum(1 for i, q in found if not any(i == m.id and near(q, m) for m in scene.markers))
    return {"markers": len(scene.markers), "detected": detected, "identified": identified, "false": false}


def load_photos(folders: Sequence[str | Path], limit: int | None, max_side: int = 640) -> list[tuple[str, np.ndarray]]:
    """Photos of the folders in name order, scaled down (aspect kept) so the long side is at most ``max_side`` px."""
    out = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError("photo folder not found", folder, hint="pass held-out sharp photos with --photos DIR")
        for p in list_images(folder):
            img = read_rgb(p)
            if img is None:
                log.warning("%s: unreadable, skipped", p)
                continue
            out.append((f"{folder.name}/{p.name}", fit_long_side(img, max_side)))
    if not out:
        raise InputError("no readable photos in " + ", ".join(map(str, folders)), hint="pass folders of .png/.jpg photos")
    return out if limit is None else [out[i] for i in spread_evenly(len(out), limit)]


def run_benchmark(photos: Sequence[tuple[str, np.ndarray]], methods: dict[str, Callable[[np.ndarray], np.ndarray]],
                  seed: int = 0, markers: int = 3, progress: bool = False) -> tuple[dict[str, dict[str, float]], list[Scene]]:
    """Rates per condition: ``sharp``, ``blurred`` and each of ``methods`` (name -> restore(blurred))."""
    from tqdm import tqdm

    totals: dict[str, dict[str, int]] = {}
    scenes = []
    for name, photo in tqdm(photos, desc="aruco", unit="scene", disable=not progress, leave=False):
        scene = make_scene(photo, name, seed, markers)
        if not scene.markers:
            continue
        scenes.append(scene)
        images = {"sharp": scene.sharp, "blurred": scene.blurred, **{k: f(scene.blurred) for k, f in methods.items()}}
        for cond, img in images.items():
            t = totals.setdefault(cond, {"markers": 0, "detected": 0, "identified": 0, "false": 0})
            for k, v in score(img, scene).items():
                t[k] += v
    if not totals:
        raise InputError("no marker fits in any photo", hint="use photos of at least 200x200 px")
    rates = {c: {"detection_rate": t["detected"] / t["markers"], "identification_rate": t["identified"] / t["markers"],
                 "false_detections": t["false"], "markers": t["markers"]} for c, t in totals.items()}
    return rates, scenes


def draw(img_rgb: np.ndarray, scene: Scene) -> np.ndarray:
    """A copy with the decoded markers outlined: green where right, red where wrong or misplaced."""
    out = img_rgb.copy()
    found, _ = detect(img_rgb)
    for i, q in found:
        ok = any(i == m.id and near(q, m) for m in scene.markers)
        cv2.polylines(out, [q.astype(np.int32)], True, (0, 220, 0) if ok else (230, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(out, str(i), tuple(int(v) for v in q[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 220, 0) if ok else (230, 0, 0), 1)
    return out


def format_rates(rates: dict[str, dict[str, float]], scenes: int) -> str:
    lines = [f"{scenes} scenes, {rates['sharp']['markers']} ArUco markers (DICT_5X5_100)", "",
             "| image | detected | identified | false detections |", "|---|---:|---:|---:|"]
    for cond, r in rates.items():
        lines.append(f"| {cond} | {r['detection_rate']:.1%} | {r['identification_rate']:.1%} | {r['false_detections']} |")
    return "\n".join(lines)
