"""``deblur-bag``: deblur the image topics of a recorded ROS 1 bag, ROS 2 bag or MCAP file.

The work is in robot/bag.py (one streaming pass), robot/bag_io.py (kinds, readers, writers,
staging) and robot/images.py (messages <-> frames). Exit codes: 0 done, 2 bad input (a bag that
is truncated or corrupt, a missing topic, an OUT that exists or is the input, an encoding we do
not take), 1 an internal failure, 130 interrupted (Ctrl-C, SIGTERM); nothing is left under OUT
unless the run finished.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from deblur.runtime.cli import make_parser, run
from deblur.runtime.errors import InputError
from deblur.runtime.interrupts import sigterm_as_interrupt
from deblur.runtime.tiling import parse_tile
from deblur.runtime.zoo import BUNDLED_HINT

log = logging.getLogger("deblur")
PROG = "deblur-bag"

EXAMPLES = """examples:
  deblur-bag run.bag --topic /cam/image_raw --out run_deblurred.bag          # adds /cam/deblurred/image_raw
  deblur-bag rosbag2_2026_01_01 --topic /cam/image_raw --out deblurred_bag   # ROS 2 bag folder (sqlite3 or MCAP)
  deblur-bag drive.mcap --topic /front/image_raw/compressed --out drive_sharp.mcap --replace
  deblur-bag run.bag --topic /left/image_raw --topic /right/image_raw --out out.bag --model g_fp16.engine --device cuda:0
"""


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Deblur sensor_msgs/Image and CompressedImage topics of a ROS 1 bag, a ROS 2 bag (sqlite3 or "
                          "MCAP) or an .mcap file; every other message is copied byte for byte, times and headers kept.",
                    EXAMPLES)
    p.add_argument("bag", metavar="IN", help="a ROS 1 .bag, a ROS 2 bag folder, or an .mcap file")
    p.add_argument("--topic", action="append", required=True, metavar="T",
                   help="an image topic to deblur (repeat for more); every frame is deblurred, none dropped")
    p.add_argument("--out", required=True, metavar="OUT",
                   help="the new bag: the input's kind, unless OUT ends in .bag (ROS 1) or .mcap (a bare MCAP file); "
                        "never overwritten")
    p.add_argument("--replace", action="store_true",
                   help="replace the original image topics (default: add <ns>/deblurred/<name> beside them)")
    p.add_argument("--storage", choices=["sqlite3", "mcap"], help="a ROS 2 bag folder's storage (default: the input's)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality for CompressedImage topics (default 95)")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="default", help="any file Deblurrer takes (.pth/.safetensors/.onnx/OpenVINO .xml/.engine) "
                                                       "or " + BUNDLED_HINT)
    m.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    m.add_argument("--threads", type=int, help="CPU threads for the model (default: the CPUs this process may use)")
    m.add_argument("--tile", default="auto", help="'auto', 0 (never) or a tile side in px")
    return p


def _main(args: argparse.Namespace) -> int:
    try:
        import rosbags  # noqa: F401
    except ImportError:
        raise InputError("deblur-bag needs rosbags, which is not installed",
                         hint="pip install 'deblur-edge[bag]' (or pip install rosbags)") from None
    from deblur.robot.bag import BagJob, run_bag

    if not 1 <= args.jpeg_quality <= 100:
        raise InputError(f"bad --jpeg-quality {args.jpeg_quality}", hint="write a quality from 1 to 100")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"bad --threads {args.threads}", hint="write a count >= 1")
    tile = parse_tile(args.tile)
    topics = list(dict.fromkeys(args.topic))
    job = BagJob(Path(args.bag), Path(args.out), topics, replace=args.replace, storage=args.storage,
                 jpeg_quality=args.jpeg_quality)

    def model():
        from deblur.runtime.deblurrer import Deblurrer

        d = Deblurrer(args.model, device=args.device, threads=args.threads, tile=tile)
        i = d.info
        log.info("model: %s on %s (%s, %s threads)", i["spec"], i["backend"], i["precision"], i["threads"])
        return d

    with sigterm_as_interrupt():  # the staging folder is removed on the way out, like Ctrl-C
        result = run_bag(job, model)
    fps = result.frames / result.seconds if result.seconds else 0.0
    log.info("wrote %s: %d frames deblurred (%.2f frames/s), %d other messages copied", result.out, result.frames, fps,
             result.copied)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, build_parser(), _main, argv)


if __name__ == "__main__":
    sys.exit(main())
