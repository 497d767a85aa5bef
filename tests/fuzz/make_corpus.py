"""Rebuild the fuzz seed corpus (tests/fuzz/corpus/<target>/): small valid files of every kind.

    .venv/bin/python tests/fuzz/make_corpus.py

Deterministic for a given set of library versions (fixed seeds, fixed timestamps, bit-exact muxing),
and small (the whole corpus stays well under 300 kB): seeds are where mutation starts, so each one
is the smallest file that still walks the decoder's whole happy path.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
sys.path.insert(0, str(HERE))

from targets import ENGINE_BYTES  # noqa: E402

TINY = dict(name="fuzz-tiny", ngf=2, n_blocks=1, n_downsampling=1, description="fuzz seed")
TINY_UNET = dict(name="fuzz-unet", family="unet", widths=(2, 4), enc_blocks=(0, 1), dec_blocks=(0,), stem=2)


def _write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def _via_file(suffix: str, save) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"f{suffix}"
        save(path)
        return path.read_bytes()


def _safetensors(state: dict, metadata: dict[str, str]) -> bytes:
    """A safetensors file with its header keys sorted (the library's own writer orders them by hash, so
    its bytes change from run to run)."""
    header: dict = {"__metadata__": metadata}
    blobs, offset = [], 0
    for k in sorted(state):
        blob = state[k].contiguous().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(state[k].shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def checkpoints() -> None:
    import torch

    from deblur.runtime.spec import ModelSpec
    from deblur.train.checkpoint import FORMAT_GENERATOR, FORMAT_TRAINING, FORMAT_VERSION
    from deblur.train.networks import build_generator

    torch.manual_seed(0)
    spec = ModelSpec(**TINY)
    state = {k: v.detach().float() for k, v in build_generator(spec).state_dict().items()}
    meta = {"torch": "fixed", "seed": 0}

    def pth(obj) -> bytes:  # torch.save names the archive's folder after the file: a fixed name, fixed bytes
        return _via_file(".pth", lambda p: torch.save(obj, p))

    _write("checkpoint_pth", "generator.pth", pth({"format": FORMAT_GENERATOR, "format_version": FORMAT_VERSION,
                                                   "spec": spec.to_dict(), "state_dict": state, "meta": meta}))
    _write("checkpoint_pth", "training.pth", pth({"format": FORMAT_TRAINING, "format_version": FORMAT_VERSION,
                                                  "spec": spec.to_dict(), "g": state, "g_ema": state, "step": 3}))
    _write("checkpoint_pth", "plain_module.pth", pth({f"module.{k}": v for k, v in state.items()}))
    _write("checkpoint_pth", "wrapped_netG.pth", pth({"netG": state}))
    import zipfile

    for seed in sorted((CORPUS / "checkpoint_pth").iterdir()):  # the pickles alone, for the checkpoint_pickle target
        with zipfile.ZipFile(seed) as z:
            _write("checkpoint_pickle", seed.stem + ".pkl", z.read(next(n for n in z.namelist() if n.endswith("/data.pkl"))))
    _write("checkpoint_safetensors", "generator.safetensors", _safetensors(state, {
        "format": FORMAT_GENERATOR, "format_version": str(FORMAT_VERSION), "spec": spec.to_json(),
        "meta": json.dumps(meta, sort_keys=True)}))
    _write("checkpoint_safetensors", "plain.safetensors", _safetensors(state, {"note": "someone else's"}))


def _contract_json(spec_kw: dict, static_hw=None, rewrites=()) -> str:
    from deblur.runtime.contract import OnnxContract
    from deblur.runtime.spec import ModelSpec

    c = OnnxContract(spec=ModelSpec(**spec_kw), static_hw=static_hw, source={"checkpoint": "g.pth", "layout": "fuzz"},
                     exporter={"deblur_edge": "0", "onnx": "0"}, graph_rewrites=tuple(rewrites))
    return c.to_json()


def onnx_models() -> None:
    import onnx
    from onnx import TensorProto, helper

    from deblur.runtime.contract import set_onnx_props

    def model(props: dict[str, str], external: bool = False) -> bytes:
        w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
        if external:
            w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1])
            w.data_location = TensorProto.EXTERNAL
            for k, v in (("location", "w.bin"), ("offset", "0"), ("length", "4")):
                w.external_data.add(key=k, value=v)
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])
        y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "h", "w"])
        graph = helper.make_graph([helper.make_node("Mul", ["input", "w"], ["output"])], "g", [x], [y], [w])
        m = helper.make_model(graph, producer_name="deblur-edge", opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        set_onnx_props(m, props)
        return m.SerializeToString()

    _write("onnx", "dynamic.onnx", model({"deblur": _contract_json(TINY)}))
    _write("onnx", "static_fp16.onnx", model({"deblur": _contract_json(TINY_UNET, (64, 96), ("fuse",)),
                                              "deblur.fp16": json.dumps({"nodes": 1})}))
    _write("onnx", "external.onnx", model({"deblur": _contract_json(TINY)}, external=True))
    _write("onnx", "no_metadata.onnx", model({}))
    _write("contract", "resnet.json", _contract_json(TINY).encode())
    _write("contract", "unet_static.json", _contract_json(TINY_UNET, (64, 96), ("fuse", "nhwc")).encode())
    _ = onnx  # the package must be importable for the seeds


def manifests() -> None:
    from deblur.runtime.contract import EngineManifest
    from deblur.runtime.spec import ModelSpec

    def manifest(**kw) -> bytes:
        m = EngineManifest(engine_sha256=hashlib.sha256(ENGINE_BYTES).hexdigest(), engine_file="g_fp16.engine",
                           tensorrt_version="10.3.0", cuda_version="12.6", driver_version="540.4.0", gpu_name="Orin",
                           compute_capability="8.7", profile={"min": [1, 3, 64, 64], "opt": [1, 3, 720, 1280],
                                                              "max": [1, 3, 1088, 1920]},
                           precision="fp16", spec=ModelSpec(**TINY).to_dict(), source_onnx="g_fp16.onnx",
                           created="2026-01-01T00:00:00+00:00", exporter_version="0.0.0", **kw)
        return m.to_json().encode()

    _write("manifest", "engine.json", manifest(parity={"fp16": {"psnr": 40.0, "passed": True}}))
    _write("manifest", "static_unet.json", manifest(strongly_typed=False).replace(
        b'"max": [\n      1,\n      3,\n      1088,\n      1920\n    ]', b'"max": [1, 3, 64, 64]'))
    data = json.loads(manifest())
    data["spec"] = ModelSpec(**TINY_UNET).to_dict()
    data["profile"]["opt"] = [1, 3, 64, 64]
    _write("manifest", "unet.json", json.dumps(data, sort_keys=True).encode())


def configs() -> None:
    import yaml

    from deblur.train.config import TrainConfig

    cfg = TrainConfig(sharp=["data/sharp"], pairs=["data/gopro"], blur_methods={"trajectory": 2.0, "gopro": 1.0})
    _write("config", "full.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    _write("config", "small.yaml", b"sharp: [photos]\nspec: deblurgan-pico\ncrop: 128\nsteps: 20\nlr: 2.0e-4\n"
                                   b"blur_methods: {trajectory: 1}\nema: 0\ninit: null\n")
    _write("config", "flow.yaml", b"{pairs: [/tmp], noise_model: poisson-gaussian, linear_light: true, highlights: 0.5}\n")


def images() -> None:
    import cv2

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    for name, ext, img, params in (
        ("rgb.png", ".png", rgb, [cv2.IMWRITE_PNG_COMPRESSION, 9]),
        ("gray16.png", ".png", (rng.integers(0, 65536, (9, 7), dtype=np.uint16)), []),
        ("rgba.png", ".png", np.dstack([rgb, rgb[..., :1]]), []),
        ("photo.jpg", ".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 80]),
        ("progressive.jpg", ".jpg", rgb, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        ("small.bmp", ".bmp", rgb[:4, :4], []),
        ("small.webp", ".webp", rgb, [cv2.IMWRITE_WEBP_QUALITY, 50]),
        ("small.tif", ".tif", rgb[:4, :4], []),
        ("gray.pgm", ".pgm", rgb[:5, :5, 0], []),
    ):
        ok, buf = cv2.imencode(ext, img, params)
        assert ok, name
        _write("image", name, buf.tobytes())
        if name in ("rgb.png", "photo.jpg", "gray16.png"):
            _write("image_folder", name, buf.tobytes())


def videos() -> None:
    import av

    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    for target, fmt, codec, name in (("video_mkv", "matroska", "libx264", "h264.mkv"), ("video_mkv", "matroska", "mjpeg", "mjpeg.mkv"),
                                     ("video_mp4", "mp4", "libx264", "h264.mp4"), ("video_mp4", "mp4", "mpeg4", "mpeg4.mp4")):
        buf = io.BytesIO()
        with av.open(buf, "w", format=fmt, container_options={"fflags": "+bitexact"}) as out:
            s = out.add_stream(codec, rate=Fraction(10))
            s.width, s.height = 48, 32
            s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
            s.codec_context.flags |= av.codec.context.Flags.bitexact
            if codec == "libx264":
                s.options = {"preset": "ultrafast", "threads": "1", "crf": "35", "x264-params": "log-level=none"}
            for k in range(4):
                frame = av.VideoFrame.from_ndarray(np.roll(base, 3 * k, axis=1), format="rgb24")
                frame.pts = k
                for packet in s.encode(frame):
                    out.mux(packet)
            for packet in s.encode(None):
                out.mux(packet)
        _write(target, name, buf.getvalue())


def main() -> None:
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    checkpoints()
    onnx_models()
    manifests()
    configs()
    images()
    videos()
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    for folder in sorted(CORPUS.iterdir()):
        files = sorted(folder.iterdir())
        print(f"{folder.name}: {len(files)} files, {sum(p.stat().st_size for p in files)} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
