"""Figures of the bundled model on real camera blur.

    python docs/make_figures.py [--model default] [--data ../shared/data]
    python docs/make_figures.py --real-out eval_out/real    # also one full-size side-by-side PNG per photo

``docs/before_after.png``: two real camera-shake photos and the model's output (SRN-Deblur
testing set 07.png, MIT; OpenCV's licenseplate_motion.jpg, Apache-2.0). ``docs/real_blur.png``: a
contact sheet of every photo in ``real_blurry/`` (see ../shared/data/SOURCES.md for each licence),
a 200 px crop at full resolution of each, blurred beside deblurred; ``--compare OTHER`` adds a
third column with another model. ``--real-out DIR`` writes the whole photos side by side.
"""
from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from deblur.runtime import Deblurrer
from deblur.runtime.images import list_images
from deblur.train.images import side_by_side, write_rgb

CROPS = [("real_blurry/srn_deblur_testing_set/07.png", (150, 300, 360, 640)),
         ("real_blurry/debian-opencv-doc/licenseplate_motion.jpg", None)]
SHEET_CROP = 200


def _pad_rows(rows: list[np.ndarray], gap: int = 6) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])


def before_after(deblur: Deblurrer, data: Path, out: Path) -> None:
    rows = []
    for rel, crop in CROPS:
        bgr = cv2.imread(str(data / rel))
        if crop:
            y, x, h, w = crop
            bgr = bgr[y : y + h, x : x + w]
        scale = 360 / bgr.shape[0]
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else bgr
        rows.append(side_by_side([bgr[..., ::-1], deblur(bgr)[..., ::-1]], ["real blurred photo", f"deblurred ({deblur.spec.name})"]))
    write_rgb(out, _pad_rows(rows))
    print(f"wrote {out}")


def _centre(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(size, h, w)
    return img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


def real_sheet(models: list[tuple[str, Deblurrer]], data: Path, out: Path, full_out: Path | None) -> None:
    """Every real blurred photo: a full-resolution centre crop per model, and optionally whole side-by-sides."""
    photos = [p for d in sorted((data / "real_blurry").iterdir()) if d.is_dir() for p in list_images(d)]
    cells = []
    for p in photos:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        outs = [(label, d(bgr)) for label, d in models]
        crop = [_centre(bgr, SHEET_CROP)] + [_centre(o, SHEET_CROP) for _, o in outs]
        cells.append(side_by_side([c[..., ::-1] for c in crop], [p.stem[:14]] + [label for label, _ in outs]))
        if full_out is not None:
            full_out.mkdir(parents=True, exist_ok=True)
            write_rgb(full_out / f"{p.parent.name}_{p.stem}.png",
                      side_by_side([bgr[..., ::-1]] + [o[..., ::-1] for _, o in outs], ["blurred"] + [label for label, _ in outs]))
    per_row = 3 if len(models) > 1 else 4
    rows = [np.concatenate([np.pad(c, ((0, 0), (0, 8), (0, 0)), constant_values=255) for c in cells[i : i + per_row]], axis=1)
            for i in range(0, len(cells), per_row)]
    write_rgb(out, _pad_rows(rows))
    print(f"wrote {out} ({len(cells)} photos)" + (f" and full-size side-by-sides in {full_out}" if full_out else ""))


def main() -> None:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--compare", help="another model for a third column of the contact sheet")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("DEBLUR_DATA", here.parents[1] / "shared" / "data")))
    p.add_argument("--out", type=Path, default=here / "before_after.png")
    p.add_argument("--sheet", type=Path, default=here / "real_blur.png")
    p.add_argument("--real-out", type=Path, help="folder for full-size side-by-side PNGs of every real photo")
    args = p.parse_args()
    with ExitStack() as stack:
        deblur = stack.enter_context(Deblurrer(args.model))
        before_after(deblur, args.data, args.out)
        models = [(f"deblurred ({Path(str(args.model)).stem})", deblur)]
        if args.compare:
            models.append((Path(args.compare).stem, stack.enter_context(Deblurrer(args.compare))))
        real_sheet(models, args.data, args.sheet, args.real_out)


if __name__ == "__main__":
    main()
