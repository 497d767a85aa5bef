"""``deblur-export``: checkpoint -> ONNX -> FP16 graph -> TensorRT engine, with a parity gate."""
from __future__ import annotations

import argparse
from pathlib import Path

from deblur.runtime.cli import make_parser, run
from deblur.runtime.zoo import BUNDLED_HINT

EPILOG = """examples:
  deblur-export --ckpt runs/nano/g.pth --fp16                       # g.onnx, g_fp16.onnx (+ engine on a GPU with TensorRT)
  deblur-export --ckpt g.pth --fp16 --static 720x1280               # fixed camera size: static shapes
  deblur-export --ckpt latest_net_G.pth --workdir out/ --max-shape 1x3x1088x1920
  deblur-export --onnx g_fp16.onnx --require-engine                 # on the Jetson: build the engine there
  deblur-export --ckpt g.pth --openvino                             # + OpenVINO IR g.xml/g.bin for Intel/AMD CPUs

Artifacts (in --workdir, default the checkpoint's or ONNX's folder): <stem>.onnx, <stem>_fp16.onnx, <stem>.xml + .bin,
<stem>[_fp16].engine + <engine>.json (manifest), <stem>.timing.cache, parity.json, parity.md.
Nothing is published under its final name unless the parity gate passes, and then everything or nothing:
work happens in a hidden .deblur-export-<pid>-* folder that is removed on exit (or by the next run, if killed).
Exit codes: 0 done (engine stage may be skipped: see the log), 2 bad input, 3 parity gate failed,
4 --require-engine but TensorRT or a GPU is missing, 130 interrupted (Ctrl-C, SIGTERM).
"""


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("deblur-export", "Export a DeblurGAN generator to ONNX, an FP16 graph and a TensorRT engine, "
                    "and refuse to publish anything that does not match PyTorch.", EPILOG)
    p.add_argument("--ckpt", help="generator checkpoint (.pth, .safetensors, training checkpoint, latest_net_G.pth) or "
                                  + BUNDLED_HINT)
    p.add_argument("--onnx", type=Path, help="build from this ONNX instead of exporting (with --ckpt: checked against it)")
    p.add_argument("--fp16", action="store_true", help="also write the mixed-precision graph (InstanceNorm in FP32) and build from it")
    p.add_argument("--fp16-tool", choices=["onnxconverter", "modelopt"], default="onnxconverter",
                   help="FP16 converter: onnxconverter-common (default) or NVIDIA ModelOpt AutoCast (separate environment)")
    p.add_argument("--openvino", action="store_true", help="also write OpenVINO IR (<stem>.xml + .bin), gated at f32 and at "
                                                            "the CPU's native bf16/f16")
    p.add_argument("--workdir", type=Path, help="output folder (default: next to --ckpt/--onnx; the current folder for --ckpt default)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--min-shape", help="TensorRT profile minimum NxCxHxW (default 1x3x64x64)")
    p.add_argument("--opt-shape", help="TensorRT profile optimum (default 1x3x720x1280)")
    p.add_argument("--max-shape", help="TensorRT profile maximum (default 1x3x1088x1920)")
    p.add_argument("--static", metavar="HxW", help="static input size instead of dynamic shapes")
    p.add_argument("--parity-images", type=Path, help="more photos for the parity gate (besides the bundled ones)")
    p.add_argument("--require-engine", action="store_true", help="fail (exit 4) when the TensorRT engine cannot be built here")
    p.add_argument("--device", default="cuda:0", help="GPU for TensorRT (default cuda:0)")
    p.add_argument("--spec", help="model spec for checkpoints that carry none (default: inferred)")
    p.add_argument("--debug-parity", action="store_true", help="on failure, name the first diverging node")
    return p


def main_args(args: argparse.Namespace) -> int:
    from deblur.export.parity import table
    from deblur.export.pipeline import ExportOptions, export
    from deblur.runtime.interrupts import sigterm_as_interrupt

    opts = ExportOptions(**{k: getattr(args, k) for k in ExportOptions.__dataclass_fields__})
    with sigterm_as_interrupt():  # like Ctrl-C: the staging folder is removed, exit code 130
        result = export(opts)
    print("\n" + table(result.parity) + "\n")
    model = next((p for n, p in result.published.items() if n.endswith(".engine")), None) or \
        next((p for n, p in result.published.items() if n.endswith(".onnx")), None) or opts.onnx
    if result.published:
        print("Published: " + ", ".join(str(p) for p in result.published.values()))
    if result.engine_skipped:
        print(f"TensorRT engine: skipped ({result.engine_skipped}); on the target run:\n  {result.engine_command}")
    if model is not None:
        print(f"Next:\n  deblur-video --model {model} --camera 0\n  deblur-bench --model {model}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run("deblur-export", build_parser(), main_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
