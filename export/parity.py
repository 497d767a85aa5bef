"""The parity gate: every artifact against the PyTorch FP32 reference, on real photos, in [0, 1].

The bounds and the per-image comparison are the runtime's (``deblur.runtime.compare``: the same
ones decide the runtime's backend choice); this module holds the per-artifact results and reports.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deblur.runtime.compare import FP16_MAX, FP16_P999, FP16_PSNR, FP32_ATOL, FP32_MAX, FP32_RTOL, ImageResult
from deblur.runtime.fileio import atomic_write_text


@dataclass
class ArtifactResult:
    artifact: str
    precision: str  # fp32 | fp16
    backend: str
    images: list[ImageResult] = field(default_factory=list)
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return self.skipped is None and all(not r.failures for r in self.images)


def summary(a: ArtifactResult) -> dict[str, Any]:
    """One artifact's result in a line of JSON (the engine manifest keeps these)."""
    finite = [r.psnr for r in a.images]
    return {"artifact": a.artifact, "backend": a.backend, "precision": a.precision, "passed": a.passed,
            "worst_psnr_db": min(finite) if finite and math.isfinite(min(finite)) else None,
            "max_abs_diff": max((r.max for r in a.images), default=None)}


def first_failure(results: list[ArtifactResult]) -> str | None:
    """One line naming the first failing artifact, image and metric, or None when all pass."""
    for a in results:
        for r in a.images:
            if r.failures:
                return f"{a.artifact} ({a.backend}, {a.precision}) on {r.image} ({r.size}): {'; '.join(r.failures)}"
    return None


def _fmt(v: float, digits: int = 2) -> str:
    return "inf" if math.isinf(v) else f"{v:.{digits}e}" if v and abs(v) < 1e-2 else f"{v:.{digits}f}"


def table(results: list[ArtifactResult]) -> str:
    """Markdown: one row per artifact (worst image) for the console summary."""
    lines = ["| artifact | backend | precision | worst PSNR (dB) | max abs diff | p99.9 abs diff | NaN/Inf | result |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for a in results:
        if a.skipped:
            lines.append(f"| {a.artifact} | {a.backend} | {a.precision} | | | | | skipped: {a.skipped} |")
            continue
        worst = min(a.images, key=lambda r: r.psnr)
        lines.append(
            f"| {a.artifact} | {a.backend} | {a.precision} | {_fmt(worst.psnr)} | {_fmt(max(r.max for r in a.images))} | "
            f"{_fmt(max(r.p999 for r in a.images))} | {sum(r.nonfinite for r in a.images)} | {'pass' if a.passed else 'FAIL'} |"
        )
    return "\n".join(lines)


def write_reports(results: list[ArtifactResult], folder: Path, header: dict) -> tuple[Path, Path]:
    """``parity.json`` (everything) and ``parity.md`` (per image: max, mean, p99.9, PSNR, NaN count)."""
    data = {**header, "passed": all(a.passed or a.skipped for a in results), "first_failure": first_failure(results),
            "thresholds": {"fp32": {"atol": FP32_ATOL, "rtol": FP32_RTOL, "max": FP32_MAX},
                           "fp16": {"psnr_db": FP16_PSNR, "p999": FP16_P999, "max": FP16_MAX}},
            "artifacts": [{**asdict(a), "passed": a.passed} for a in results]}
    js = folder / "parity.json"
    atomic_write_text(js, json.dumps(data, indent=2, default=str) + "\n")
    md = [f"# Parity report: {header.get('checkpoint') or header.get('onnx')}", "",
          "Reference: " + header.get("reference", "PyTorch FP32") + ". Outputs compared in [0, 1].", "", table(results), ""]
    for a in results:
        if a.skipped:
            continue
        md += [f"## {a.artifact} ({a.backend}, {a.precision})", "",
               "| image | size | max abs diff | mean abs diff | p99.9 abs diff | PSNR (dB) | NaN/Inf | result |", "|---|---|---:|---:|---:|---:|---:|---|"]
        md += [f"| {r.image} | {r.size} | {_fmt(r.max)} | {_fmt(r.mean)} | {_fmt(r.p999)} | {_fmt(r.psnr)} | {r.nonfinite} | "
               f"{'pass' if not r.failures else 'FAIL: ' + '; '.join(r.failures)} |" for r in a.images]
        md.append("")
    mdp = folder / "parity.md"
    atomic_write_text(mdp, "\n".join(md))
    return js, mdp
