"""Make the bundled demo clip ``video/demo/shake_street.mp4`` from real camera-shake photos.

The four frames of the SRN-Deblur testing set (MIT) were taken hand-held and carry real camera
shake. The clip drifts a 16:9 window slowly across each of them (a gentle pan and zoom, so it
looks like video and exercises the pipeline), at 640x360 and 24 fps, 36 frames per photo:

    python docs/make_demo_clip.py [--data ../shared/data]

The drift adds no blur of its own: every frame's blur is the camera's.
"""
from __future__ import annotations

import argparse
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

PHOTOS = ["01.png", "07.png", "08.png", "4c6.png"]
OUT = Path(__file__).resolve().parent.parent / "video" / "demo" / "shake_street.mp4"
SIZE, FPS, PER_PHOTO = (640, 360), 24, 36


def frames(photo: np.ndarray):
    h, w = photo.shape[:2]
    ch = min(h, round(w * 9 / 16)) * 0.8  # a window 80% of the largest 16:9 crop
    for k in range(PER_PHOTO):
        s = k / (PER_PHOTO - 1)
        zoom = 1.0 - 0.08 * s
        cw, chh = ch * 16 / 9 * zoom, ch * zoom
        cx = w / 2 + (w - cw) * 0.4 * (s - 0.5)
        cy = h / 2 + (h - chh) * 0.2 * (0.5 - s)
        m = np.float32([[SIZE[0] / cw, 0, SIZE[0] / 2 - cx * SIZE[0] / cw], [0, SIZE[1] / chh, SIZE[1] / 2 - cy * SIZE[1] / chh]])
        yield cv2.warpAffine(photo, m, SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT_101)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("DEBLUR_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    a = p.parse_args()
    src = Path(a.data) / "real_blurry" / "srn_deblur_testing_set"
    tmp = OUT.with_name(".shake_street.tmp.mp4")
    with av.open(str(tmp), "w") as c:
        st = c.add_stream("libx264", rate=Fraction(FPS))
        st.width, st.height, st.pix_fmt = *SIZE, "yuv420p"
        st.codec_context.gop_size = FPS
        st.options = {"crf": "18", "preset": "slow", "bf": "0"}
        for name in PHOTOS:
            photo = cv2.imread(str(src / name), cv2.IMREAD_COLOR)
            for img in frames(photo):
                for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                    c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, {len(PHOTOS) * PER_PHOTO} frames)")


if __name__ == "__main__":
    main()
