"""Make docs/before_after.png: real camera-shake photos and the bundled default model's output.

    python docs/make_figures.py [--model default] [--data ../shared/data]

Photos: SRN-Deblur testing set 07.png (MIT) and OpenCV's licenseplate_motion.jpg (Apache-2.0), cropped.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from deblur.runtime import Deblurrer
from deblur.train.images import side_by_side, write_rgb

CROPS = [("real_blurry/srn_deblur_testing_set/07.png", (150, 300, 360, 640)),
         ("real_blurry/debian-opencv-doc/licenseplate_motion.jpg", None)]


def main() -> None:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("DEBLUR_DATA", here.parents[1] / "shared" / "data")))
    p.add_argument("--out", type=Path, default=here / "before_after.png")
    args = p.parse_args()
    rows = []
    with Deblurrer(args.model) as deblur:
        for rel, crop in CROPS:
            bgr = cv2.imread(str(args.data / rel))
            if crop:
                y, x, h, w = crop
                bgr = bgr[y : y + h, x : x + w]
            scale = 360 / bgr.shape[0]
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else bgr
            out = deblur(bgr)
            rows.append(side_by_side([bgr[..., ::-1], out[..., ::-1]], ["real blurred photo", f"deblurred ({deblur.spec['name']})"]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    write_rgb(args.out, np.concatenate(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
