"""Training curves as a PNG, from the ``metrics.jsonl`` the trainer appends to."""
from __future__ import annotations

import json
from pathlib import Path

from deblur.runtime.errors import InputError
from deblur.runtime.fileio import atomic_path


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise InputError("metrics log not found", path, hint="pass a deblur-train output folder")
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash: skip it
    return rows


def plot_curves(metrics: str | Path, png: str | Path) -> Path:
    """Four panels: generator terms, critic terms, validation PSNR and SSIM (with the input's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    panels = [
        (axes[0, 0], "generator", ["loss/g_adv", "loss/g_content"]),
        (axes[0, 1], "critic", ["loss/d", "loss/gp"]),
        (axes[1, 0], "validation PSNR (dB)", ["val/psnr", "val/psnr_identity"]),
        (axes[1, 1], "validation SSIM", ["val/ssim", "val/ssim_identity"]),
    ]
    for ax, title, keys in panels:
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, label=key.split("/")[-1].replace("_identity", " (blurred input)"),
                        linestyle="--" if "identity" in key else "-")
        ax.set_title(title)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    png = Path(png)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return png
