"""``deblur-eval``: deblur paired folders with the PyTorch backend and report PSNR and SSIM.

The identity baseline (blurred input vs sharp) is always reported beside the model, so a number
means something on its own: a model that does not beat the identity has learned nothing.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deblur.runtime.cli import make_parser, run
from deblur.runtime.device import parse_device
from deblur.runtime.errors import InputError
from deblur.runtime.fileio import atomic_write_text
from deblur.runtime.images import list_images, read_rgb
from deblur.runtime.spec import get_spec
from deblur.runtime.zoo import BUNDLED_HINT
from deblur.train.images import side_by_side, spread_evenly, write_rgb
from deblur.train.metrics import psnr, ssim

log = logging.getLogger("deblur")

EPILOG = """examples:
  deblur-eval --model default --blur samples/blur --sharp samples/sharp
  deblur-eval --model runs/exp1/g.pth --blur val/blur --sharp val/sharp --out eval_out --json eval.json
  deblur-eval --model latest_net_G.pth --blur blur/ --sharp sharp/      # the authors' 2018 weights

Images are matched by file name (then by stem). Gray images are read as RGB.
Metrics: RGB uint8, PSNR with data range 255, Gaussian SSIM (sigma 1.5, population covariance) as
skimage's structural_similarity(gaussian_weights=True, use_sample_covariance=False); mean per image.
"""


@dataclass
class Row:
    name: str
    psnr_model: float
    ssim_model: float
    psnr_identity: float
    ssim_identity: float
    ms: float
    baselines: dict[str, tuple[float, float]] = field(default_factory=dict)  # label -> (psnr, ssim)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "deblur-eval",
        "Deblur each image of --blur, compare with the same-named image in --sharp, and print PSNR/SSIM "
        "for the model and for the blurred input (identity baseline).",
        EPILOG,
    )
    p.add_argument("--model", required=True,
                   help="checkpoint (.pth, .safetensors, training checkpoint, authors' latest_net_G.pth) or " + BUNDLED_HINT)
    p.add_argument("--task", choices=["pairs", "aruco"], default="pairs",
                   help="pairs: PSNR/SSIM on --blur/--sharp (default); aruco: ArUco marker detection on blurred, "
                        "deblurred and sharp scenes made from --photos")
    p.add_argument("--blur", type=Path, help="folder of blurred images (task pairs)")
    p.add_argument("--sharp", type=Path, help="folder of sharp images with the same names (task pairs)")
    p.add_argument("--photos", type=Path, action="append", help="held-out sharp photos for the ArUco scenes (task aruco; repeatable)")
    p.add_argument("--markers", type=int, default=3, help="markers per ArUco scene (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ArUco scenes (default 0)")
    p.add_argument("--out", type=Path, help="folder for per-image metrics.csv and side-by-side PNGs")
    p.add_argument("--json", type=Path, help="write the summary as JSON to this file")
    p.add_argument("--spec", help="model spec for checkpoints that carry none (default: inferred from shapes)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--limit", type=int, help="evaluate only the first N pairs")
    p.add_argument("--baselines", action="store_true",
                   help="also run unsharp masking, Wiener and Richardson-Lucy (scikit-image), each with the best "
                        "single setting of a small grid searched on up to 8 of the pairs")
    return p


def match_pairs(blur_dir: Path, sharp_dir: Path) -> list[tuple[Path, Path]]:
    """Pair by exact file name, then by stem; unmatched files are reported, not fatal."""
    blurred, sharp = list_images(blur_dir), list_images(sharp_dir)
    for folder, files in ((blur_dir, blurred), (sharp_dir, sharp)):
        if not files:
            raise InputError("holds no images", folder, hint="put .png or .jpg images in it")
    by_name = {p.name: p for p in sharp}
    by_stem = {p.stem: p for p in sharp}
    pairs = [(b, by_name.get(b.name) or by_stem.get(b.stem)) for b in blurred]
    found = [(b, s) for b, s in pairs if s is not None]
    if not found:
        raise InputError(f"no image in {blur_dir} has a same-named image in {sharp_dir}", sharp_dir, hint="name each pair identically")
    missing = [b.name for b, s in pairs if s is None]
    if missing:
        log.warning("%d blurred image(s) have no sharp twin in %s and are skipped: %s", len(missing), sharp_dir, ", ".join(missing[:5]))
    return found


def evaluate(args: argparse.Namespace) -> int:
    from deblur.train.checkpoint import load_generator
    from deblur.train.infer import deblur_rgb

    spec = get_spec(args.spec) if args.spec else None  # a typo fails before any work
    args.device = parse_device(args.device)
    if args.limit is not None and args.limit < 1:  # a slice with -1 silently dropped the last pair, 0 evaluated none
        raise InputError(f"--limit must be at least 1, got {args.limit}", hint="leave it out to evaluate every pair")
    if args.task == "aruco":
        return evaluate_aruco(args, spec)
    if args.blur is None or args.sharp is None:
        raise InputError("--blur and --sharp are required for --task pairs", hint="pass both folders, or --task aruco --photos DIR")
    pairs = match_pairs(args.blur, args.sharp)[: args.limit]
    model, weights = load_generator(args.model, spec=spec, device=args.device)
    log.info("model %s: spec %s, %s", weights.path, weights.spec.name, weights.layout)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    baselines = _search_baselines(pairs) if args.baselines else []
    rows: list[Row] = []
    skipped = 0
    for blur_path, sharp_path in _progress(pairs):
        loaded = _load_pair(blur_path, sharp_path)
        if loaded is None:
            skipped += 1
            continue
        blurred, sharp = loaded
        t0 = time.perf_counter()
        out = deblur_rgb(model, blurred, args.device)
        ms = (time.perf_counter() - t0) * 1e3
        rows.append(Row(blur_path.name, psnr(out, sharp), ssim(out, sharp), psnr(blurred, sharp), ssim(blurred, sharp), ms))
        for b in baselines:
            restored = b.run(blurred)
            rows[-1].baselines[b.label] = (psnr(restored, sharp), ssim(restored, sharp))
        if args.out:
            panel = side_by_side([blurred, out, sharp], [f"blurred {rows[-1].psnr_identity:.2f} dB", f"deblurred {rows[-1].psnr_model:.2f} dB", "sharp"])
            write_rgb(args.out / f"{blur_path.stem}_side_by_side.png", panel)
    if not rows:
        raise InputError(f"none of the {len(pairs)} pairs could be evaluated", args.blur, hint="see the warnings above")
    summary = summarise(rows)
    if not summary["images"]:
        raise InputError(f"every one of the {len(rows)} pairs is reproduced exactly by some method (infinite PSNR)", args.blur,
                         hint="are the blurred images copies of the sharp ones?")
    if summary["exact"]:
        log.warning("%d pair(s) reproduced exactly by some method (infinite PSNR) left out of every column: %s",
                    len(summary["exact"]), ", ".join(summary["exact"][:5]))
    print(format_table(summary, rows, weights.spec.name, weights.path.name, skipped))
    if args.out:
        atomic_write_text(args.out / "metrics.csv", to_csv(rows))
        log.info("wrote %s and %d side-by-side PNGs", args.out / "metrics.csv", len(rows))
    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=2) + "\n")
    return 0


def evaluate_aruco(args: argparse.Namespace, spec) -> int:  # noqa: ANN001 - ModelSpec | None
    """ArUco detection and identification rates on blurred, deblurred and sharp scenes (aruco_eval)."""
    from deblur.train import aruco_eval
    from deblur.train.checkpoint import load_generator
    from deblur.train.infer import deblur_rgb

    if not args.photos:
        raise InputError("--task aruco needs --photos DIR (held-out sharp photos)", hint="e.g. --photos ../shared/data/sharp/kodak24")
    if not 1 <= args.markers <= 20:
        raise InputError(f"--markers must be 1..20 per scene, got {args.markers}")
    photos = aruco_eval.load_photos(args.photos, args.limit)
    model, weights = load_generator(args.model, spec=spec, device=args.device)
    methods = {f"deblurred ({weights.path.name})": lambda img: deblur_rgb(model, img, args.device)}
    if args.baselines:
        from deblur.train.baselines import METHODS, search

        sample = [(s.blurred, s.sharp) for s in (aruco_eval.make_scene(p, n, args.seed, args.markers) for n, p in photos[:8])]
        methods.update({b.label: b.run for b in (search(m, sample) for m in METHODS)})
    rates, scenes = aruco_eval.run_benchmark(photos, methods, args.seed, args.markers, progress=sys.stderr.isatty())
    print(aruco_eval.format_rates(rates, len(scenes)))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        deblur = methods[next(iter(methods))]
        for scene in scenes[:6]:
            panels = [aruco_eval.draw(img, scene) for img in (scene.blurred, deblur(scene.blurred), scene.sharp)]
            write_rgb(args.out / f"aruco_{Path(scene.name).stem}.png", side_by_side(panels, ["blurred", "deblurred", "sharp"]))
        log.info("wrote %d ArUco panels to %s", min(6, len(scenes)), args.out)
    if args.json:
        atomic_write_text(args.json, json.dumps({"task": "aruco", "scenes": len(scenes), "rates": rates}, indent=2) + "\n")
    return 0


def _load_pair(blur_path: Path, sharp_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Both images as uint8 RGB, or None (with a warning) when unreadable or mismatched."""
    blurred, sharp = read_rgb(blur_path), read_rgb(sharp_path)
    if blurred is None or sharp is None:
        log.warning("skipped %s: unreadable image", blur_path if blurred is None else sharp_path)
        return None
    if blurred.shape != sharp.shape or min(blurred.shape[:2]) < 11:
        log.warning("skipped %s: size %s vs sharp %s (pairs must match, at least 11x11)", blur_path.name, blurred.shape[:2], sharp.shape[:2])
        return None
    return blurred, sharp


def _search_baselines(pairs: list[tuple[Path, Path]], n: int = 8) -> list:
    """The best single setting of each classical method, searched on ``n`` pairs spread over the set."""
    from deblur.train.baselines import METHODS, search

    sample = [p for p in (_load_pair(*pairs[i]) for i in spread_evenly(len(pairs), n)) if p is not None]
    return [search(m, sample) for m in METHODS] if sample else []


def _progress(items: list) -> list:
    from tqdm import tqdm

    return tqdm(items, desc="deblur-eval", unit="img", disable=not sys.stderr.isatty(), leave=False)


def _psnrs(r: Row) -> list[float]:
    return [r.psnr_model, r.psnr_identity, *(v[0] for v in r.baselines.values())]


def summarise(rows: list[Row]) -> dict:
    """Means over one image set for every column: a pair where any method reproduces the sharp image
    exactly (infinite PSNR, e.g. a pair whose blurred and sharp images are equal) is left out of all
    of them and named under ``exact``, so the model and the identity are compared on the same images."""
    used = [r for r in rows if all(math.isfinite(v) for v in _psnrs(r))]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    out = {
        "model": {"psnr": mean([r.psnr_model for r in used]), "ssim": mean([r.ssim_model for r in used])},
        "identity": {"psnr": mean([r.psnr_identity for r in used]), "ssim": mean([r.ssim_identity for r in used])},
        "images": len(used),
        "exact": [r.name for r in rows if r not in used],
    }
    labels = list(rows[0].baselines) if rows else []
    if labels:
        out["baselines"] = {k: {"psnr": mean([r.baselines[k][0] for r in used]), "ssim": mean([r.baselines[k][1] for r in used])}
                            for k in labels}
    return out


def format_table(summary: dict, rows: list[Row], spec: str, model_name: str, skipped: int = 0) -> str:
    m, i = summary["model"], summary["identity"]
    ms = float(np.median([r.ms for r in rows]))
    lines = [
        f"{summary['images']} image pair(s)" + (f", {skipped} skipped" if skipped else "")
        + (f", {len(summary['exact'])} reproduced exactly left out" if summary.get("exact") else "") + f"; median {ms:.0f} ms/image",
        "",
        "| method | PSNR (dB) | SSIM |",
        "|---|---:|---:|",
        f"| identity (blurred input) | {i['psnr']:.2f} | {i['ssim']:.4f} |",
        *(f"| {k} | {v['psnr']:.2f} | {v['ssim']:.4f} |" for k, v in summary.get("baselines", {}).items()),
        f"| {model_name} ({spec}) | {m['psnr']:.2f} | {m['ssim']:.4f} |",
        f"| gain over identity | {m['psnr'] - i['psnr']:+.2f} | {m['ssim'] - i['ssim']:+.4f} |",
    ]
    return "\n".join(lines)


def to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "psnr_model", "ssim_model", "psnr_identity", "ssim_identity", "ms"])
    for r in rows:
        w.writerow([r.name, f"{r.psnr_model:.4f}", f"{r.ssim_model:.6f}", f"{r.psnr_identity:.4f}", f"{r.ssim_identity:.6f}", f"{r.ms:.1f}"])
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    return run("deblur-eval", build_parser(), evaluate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
