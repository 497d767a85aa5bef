"""``deblur-blur``: make blurred/sharp training pairs from sharp photos, or a shaky test video."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deblur.runtime.cli import make_parser, run
from deblur.runtime.errors import InputError
from deblur.runtime.shapes import parse_hw

PROG = "deblur-blur"
DESCRIPTION = "Make blurred/sharp training pairs from sharp photos, or a shaky test video from one photo."
EPILOG = """examples:
  # DeblurGAN random-trajectory blur for every image in a folder (reproducible with --seed)
  deblur-blur pairs --sharp photos/ --out data/synth --seed 0
  # GoPro-style blur: frames along a hand-shake path averaged in linear light
  deblur-blur pairs --sharp photos/ --out data/gopro_like --method gopro --limit 100
  # a 2 s shaky pan over one photo: out/blur.mp4 and out/sharp.mp4, same frame count
  deblur-blur video --image photo.jpg --out out/ --frames 48 --size 640x360 --fps 24
"""


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360): --size is written W first (video style); one-line InputError otherwise."""
    bad = InputError(f"bad --size {text!r}", hint="use WxH with both sides >= 16, e.g. 640x360")
    try:
        w, h = parse_hw(text, "--size")  # the one AxB parser; its own hint would say HxW, hence ours
    except InputError:
        raise bad from None
    if min(w, h) < 16:
        raise bad
    return w, h


def _at_least(value: int | float | None, low: float, flag: str) -> None:
    if value is not None and value < low:
        raise InputError(f"{flag} must be >= {low:g}, got {value}")


def build_parser() -> argparse.ArgumentParser:
    """The top parser (common flags) with the ``pairs`` and ``video`` subcommands."""
    p = make_parser(PROG, DESCRIPTION, EPILOG)
    sub = p.add_subparsers(dest="command", required=True, metavar="{pairs,video}")
    fmt = argparse.RawDescriptionHelpFormatter
    pairs = sub.add_parser("pairs", help="blur a folder of sharp images into blur/ and sharp/ PNG pairs",
                           epilog=EPILOG, formatter_class=fmt)
    pairs.add_argument("--sharp", required=True, type=Path, metavar="DIR", help="folder of sharp images")
    pairs.add_argument("--out", required=True, type=Path, metavar="DIR",
                       help="output folder (gets blur/ and sharp/)")
    pairs.add_argument("--method", choices=["trajectory", "gopro"], default="trajectory",
                       help="trajectory: DeblurGAN random PSF (default); gopro: averaged shaky frames")
    pairs.add_argument("--seed", type=int, default=0, metavar="N",
                       help="base seed; each image's seed mixes in its file name")
    pairs.add_argument("--max-len", type=float, default=None, metavar="PX",
                       help="trajectory: path length in px at full exposure (default: the authors' 60)")
    pairs.add_argument("--limit", type=int, default=None, metavar="N",
                       help="only the first N images (sorted by name)")
    video = sub.add_parser("video", help="render a shaky pan over one photo as blur.mp4 + sharp.mp4",
                           epilog=EPILOG, formatter_class=fmt)
    video.add_argument("--image", required=True, type=Path, metavar="IMG", help="the still photo to pan over")
    video.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    video.add_argument("--frames", type=int, default=48, metavar="N", help="number of frames (default: 48)")
    video.add_argument("--size", default="640x360", metavar="WxH", help="frame size WxH (default: 640x360)")
    video.add_argument("--fps", type=float, default=24.0, metavar="F", help="frame rate (default: 24)")
    video.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the shake path (default: 0)")
    for sp in (pairs, video):  # the common flags also work after the subcommand
        sp.add_argument("--log-level", default=argparse.SUPPRESS, type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="how much to log")
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks on errors")
    return p


def _pairs(args: argparse.Namespace) -> int:
    from deblur.train.blur_io import make_pairs
    from deblur.train.psf import TrajectoryParams

    _at_least(args.seed, 0, "--seed")
    _at_least(args.limit, 1, "--limit")
    params = None
    if args.max_len is not None:
        if args.method != "trajectory":
            raise InputError("--max-len applies to --method trajectory only")
        try:
            params = TrajectoryParams(max_len=args.max_len)
        except InputError as e:
            raise InputError(f"bad --max-len {args.max_len:g}", hint=e.message) from None
    stats = make_pairs(args.sharp, args.out, args.method, args.seed, limit=args.limit, params=params)
    print(f"wrote {stats.written} pairs to {args.out} ({stats.skipped} skipped)")
    return 0


def _video(args: argparse.Namespace) -> int:
    from deblur.runtime.images import read_rgb
    from deblur.train.blur_io import write_video_pair

    size = parse_size(args.size)
    _at_least(args.frames, 1, "--frames")
    _at_least(args.seed, 0, "--seed")
    if not args.fps > 0:
        raise InputError(f"--fps must be > 0, got {args.fps}")
    if not args.image.is_file():
        raise InputError("image not found", path=args.image)
    rgb = read_rgb(args.image)
    if rgb is None:
        raise InputError("cannot decode the image", path=args.image, hint="use a PNG or JPEG photo")
    paths = write_video_pair(rgb, args.out, np.random.default_rng(args.seed), frames=args.frames,
                             size=size, fps=args.fps)
    print(f"wrote {args.frames} frames to {paths[0]} and {paths[1]}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    return _pairs(args) if args.command == "pairs" else _video(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``deblur-blur``; returns the exit code (2 for bad input)."""
    return run(PROG, build_parser(), _dispatch, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
