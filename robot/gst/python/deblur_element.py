"""GStreamer element ``deblur``: motion deblurring of raw video frames in any pipeline.

``... ! videoconvert ! video/x-raw,format=BGR ! deblur model=default ! videoconvert ! ...``

GStreamer's Python plugin loader (``libgstpython.so``, Debian ``gstreamer1.0-python3-plugin-loader``)
imports every ``python/*.py`` under ``$GST_PLUGIN_PATH`` into the SYSTEM Python, not a venv:
``eval "$(deblur-gst-env)"`` exports the paths this file needs. The import of numpy and of the
deblur package waits until the element starts, so a broken environment shows up as an element error
naming the cause (not as a missing element or "not-negotiated"), and other pipelines pay nothing.
``$DEBLUR_GST_SITE_PACKAGES`` names site-packages folders whose ``.pth`` files run here (the loader
reads none): an editable install maps ``deblur.*`` onto the source tree through one of them.

Caps: BGR, RGB, BGRx, RGBx, GRAY8, GRAY16_LE, the same on both pads; rows are read with their stride
(``GstVideoMeta`` when the buffer has one, else ``GstVideoInfo``). QoS is on: a frame already late
when it arrives is dropped (newest wins). Latency queries add the median of the measured per-frame
time (pre + inference + post; a size's first frame left out once a second is in) to upstream's, and a
latency message asks the pipeline to re-query when that median moves.
"""
from __future__ import annotations

import os
import site
import statistics
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GObject, Gst, GstBase, GstVideo  # noqa: E402

Gst.init(None)

FORMATS = ("BGR", "RGB", "BGRx", "RGBx", "GRAY8", "GRAY16_LE")
# format -> (channels, numpy dtype, channels are RGB-ordered)
LAYOUT = {"BGR": (3, "u1", False), "RGB": (3, "u1", True), "BGRx": (4, "u1", False), "RGBx": (4, "u1", True),
          "GRAY8": (1, "u1", False), "GRAY16_LE": (1, "<u2", False)}
CAPS = Gst.Caps.from_string(f"video/x-raw, format=(string){{ {', '.join(FORMATS)} }}, "
                            "width=(int)[ 1, 2147483647 ], height=(int)[ 1, 2147483647 ], framerate=(fraction)[ 0/1, 2147483647/1 ]")
WINDOW = 15  # frames in the latency median
SITE_ENV = "DEBLUR_GST_SITE_PACKAGES"


def _add_site_packages() -> None:
    """Run the ``.pth`` files of the folders in ``$DEBLUR_GST_SITE_PACKAGES`` (editable installs live there)."""
    for folder in filter(None, os.environ.get(SITE_ENV, "").split(os.pathsep)):
        if os.path.isdir(folder):
            site.addsitedir(folder)


def _load_runtime():
    """numpy and ``Deblurrer``, imported in this (system) Python; ImportError says what is missing."""
    _add_site_packages()
    import numpy

    from deblur.runtime.deblurrer import Deblurrer

    return numpy, Deblurrer


class Deblur(GstBase.BaseTransform):
    __gtype_name__ = "GstDeblur"
    __gstmetadata__ = ("Deblur", "Filter/Effect/Video", "DeblurGAN motion deblurring (deblur-edge)", "deblur-edge")
    __gsttemplates__ = (Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS),
                        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS))
    __gproperties__ = {
        "model": (str, "model", "a .onnx, .xml, .engine or .pth file, or 'default' (the bundled model)", "default",
                  GObject.ParamFlags.READWRITE | Gst.PARAM_MUTABLE_READY),
        "device": (str, "device", "cpu, cuda or cuda:N", "cpu", GObject.ParamFlags.READWRITE | Gst.PARAM_MUTABLE_READY),
        "threads": (int, "threads", "CPU threads of the backend (0: the CPUs this process may use)", 0, 4096, 0,
                    GObject.ParamFlags.READWRITE | Gst.PARAM_MUTABLE_READY),
        "tile": (str, "tile", "'auto', 0 (never tile) or a tile side in px", "auto",
                 GObject.ParamFlags.READWRITE | Gst.PARAM_MUTABLE_READY),
    }

    def __init__(self) -> None:
        super().__init__()
        self._props = {"model": "default", "device": "cpu", "threads": 0, "tile": "auto"}
        self._np = None
        self._deblurrer = None
        self._layout = None
        self._info = None
        self._format = ""
        self._times: list[float] = []
        self._since_caps = 0  # frames measured since start or the last caps change
        self._latency_ns = 0
        self._reported_ns = 0
        self.set_qos_enabled(True)

    # ------------------------------------------------------------------------------ properties
    def do_get_property(self, prop: GObject.ParamSpec):
        return self._props[prop.name]

    def do_set_property(self, prop: GObject.ParamSpec, value) -> None:
        self._props[prop.name] = value

    # ------------------------------------------------------------------------------ errors
    def _error(self, domain, code, text: str, debug: str) -> None:
        """GST_ELEMENT_ERROR: gst-launch prints ``text`` (and exits non-zero) instead of a bare state-change failure."""
        self.message_full(Gst.MessageType.ERROR, domain.quark(), code, text, debug, __file__, "deblur", 0)

    # ------------------------------------------------------------------------------ lifecycle
    def do_start(self) -> bool:
        try:
            self._np, deblurrer_cls = _load_runtime()
        except Exception as exc:  # ImportError, or a broken wheel raising anything at import
            self._error(Gst.LibraryError, Gst.LibraryError.INIT,
                        f"deblur: cannot import the deblur package in GStreamer's Python ({sys.version.split()[0]}): "
                        f'{type(exc).__name__}: {exc}; run eval "$(deblur-gst-env)" with the environment that has deblur-edge',
                        f"sys.path={sys.path} {SITE_ENV}={os.environ.get(SITE_ENV)!r}")
            return False
        p = self._props
        from deblur.runtime.errors import InputError
        from deblur.runtime.tiling import parse_tile

        try:
            tile = parse_tile(p["tile"], "tile property")
        except InputError as exc:
            self._error(Gst.CoreError, Gst.CoreError.FAILED, f"deblur: {exc.line()}", "")
            return False
        try:
            self._deblurrer = deblurrer_cls(p["model"], device=p["device"], threads=p["threads"] or None, tile=tile)
        except Exception as exc:  # DeblurError (one line: what, which file, what to do), or a backend's own
            line = exc.line() if hasattr(exc, "line") else f"{type(exc).__name__}: {exc}"
            text = f"deblur: {line}" if p["model"] in line else f"deblur: cannot load model {p['model']!r}: {line}"
            self._error(Gst.ResourceError, Gst.ResourceError.OPEN_READ, text, f"model={p['model']} device={p['device']}")
            return False
        self._times, self._since_caps, self._latency_ns, self._reported_ns = [], 0, 0, 0
        Gst.info(f"deblur: {self._deblurrer!r}")
        return True

    def do_stop(self) -> bool:
        if self._deblurrer is not None:
            self._deblurrer.close()
        self._deblurrer = None
        return True

    def do_set_caps(self, incaps: Gst.Caps, outcaps: Gst.Caps) -> bool:
        info = GstVideo.VideoInfo.new_from_caps(incaps)
        if info is None:
            return False
        name = GstVideo.VideoFormat.to_string(info.finfo.format)
        if name not in LAYOUT:
            return False
        self._info, self._layout, self._format = info, LAYOUT[name], name
        self._since_caps = 0  # a new size pays its one-time costs again
        return True

    # ------------------------------------------------------------------------------ frames
    def _plane(self, buf: Gst.Buffer, data) -> object:
        """The frame's pixels as an HxW[xC] view of the mapped memory, rows ``stride`` bytes apart."""
        np, info = self._np, self._info
        ch, dtype, _ = self._layout
        meta = GstVideo.buffer_get_video_meta(buf)
        offset, stride = (meta.offset[0], meta.stride[0]) if meta is not None else (info.offset[0], info.stride[0])
        item = np.dtype(dtype).itemsize
        shape = (info.height, info.width) + ((ch,) if ch > 1 else ())
        strides = (stride, ch * item) + ((item,) if ch > 1 else ())
        return np.ndarray(shape, dtype=dtype, buffer=data, offset=offset, strides=strides)

    def do_transform_ip(self, buf: Gst.Buffer) -> Gst.FlowReturn:
        if self._deblurrer is None or self._layout is None:
            return Gst.FlowReturn.NOT_NEGOTIATED
        t0 = time.perf_counter()
        ok, mapping = buf.map(Gst.MapFlags.READ | Gst.MapFlags.WRITE)
        if not ok:
            self._error(Gst.StreamError, Gst.StreamError.FAILED, "deblur: cannot map a buffer for writing", "")
            return Gst.FlowReturn.ERROR
        try:
            self._deblur(self._plane(buf, mapping.data))
        except Exception as exc:  # an exception out of a vfunc would be printed and the frame passed on: stop instead
            line = exc.line() if hasattr(exc, "line") else f"{type(exc).__name__}: {exc}"
            self._error(Gst.StreamError, Gst.StreamError.FAILED, f"deblur: {line}", f"{self._deblurrer!r} {self._format}")
            return Gst.FlowReturn.ERROR
        finally:
            buf.unmap(mapping)
        self._measured(time.perf_counter() - t0)
        return Gst.FlowReturn.OK

    def _deblur(self, view) -> None:
        """Deblur the picture ``view`` shows, in place (a contiguous copy goes to the model; padding stays untouched)."""
        frame = self._np.ascontiguousarray(view)
        rgb = self._layout[2]
        if rgb:  # the model runs on BGR(A); the x/alpha byte stays where it is
            frame = frame[..., [2, 1, 0, 3]] if frame.shape[-1] == 4 else frame[..., ::-1]
        out = self._deblurrer(frame)
        if rgb:
            out = out[..., [2, 1, 0, 3]] if out.shape[-1] == 4 else out[..., ::-1]
        view[...] = out

    # ------------------------------------------------------------------------------ latency
    def _measured(self, seconds: float) -> None:
        """Keep the last WINDOW frame times; when their median moves by a quarter, ask for a new latency query.

        The first frame after start or a caps change pays one-time costs (a backend's per-shape compile, buffers):
        it stands in only until the next frame replaces it, so the answer is the steady per-frame time even when
        QoS lets only a few frames through."""
        self._since_caps += 1
        if self._since_caps == 2:  # the first frame is the last time kept
            self._times.pop()
        self._times = (self._times + [seconds])[-WINDOW:]
        self._latency_ns = int(statistics.median(self._times) * Gst.SECOND)  # one int: the query thread reads it whole
        if abs(self._latency_ns - self._reported_ns) > self._reported_ns // 4:
            self._reported_ns = self._latency_ns
            self.post_message(Gst.Message.new_latency(self))

    def do_gst_base_transform_query(self, direction: Gst.PadDirection, query: Gst.Query) -> bool:
        """The LATENCY query: upstream's latency plus the median frame time (``do_query`` is ambiguous in PyGObject)."""
        if query.type != Gst.QueryType.LATENCY or direction != Gst.PadDirection.SRC:
            return GstBase.BaseTransform.do_query(self, direction, query)
        if not GstBase.BaseTransform.do_query(self, direction, query):
            return False
        live, low, high = query.parse_latency()
        ours = self._latency_ns
        query.set_latency(live, low + ours, high if high == Gst.CLOCK_TIME_NONE else high + ours)
        return True


GObject.type_register(Deblur)
__gstelementfactory__ = ("deblur", Gst.Rank.NONE, Deblur)
