"""Several inference threads: frames finish out of order, yet come out in order, none lost or repeated."""
from __future__ import annotations

import random
import threading
import time

from video_helpers import frame_index, write_clip

from deblur.video.pipeline import Pipeline, PipelineOptions, Sinks
from deblur.video.source import VideoSource
from deblur.video.uri import parse_source


class SlowAndUneven:
    """A stand-in model with a random delay per frame (a real one would finish in order too often)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.calls = 0
        self.timings = {}

    def __call__(self, img):
        self.calls += 1
        time.sleep(self.rng.uniform(0.0, 0.03))
        self.timings = {"infer_ms": 1.0}
        return img


class Collect:
    def __init__(self):
        self.indices = []
        self.target, self.describe = "memory", "collect"

    def write(self, img, t):
        self.indices.append(frame_index(img))

    def close(self):
        pass


def run_clip(tmp_path, n: int, models: list, **options) -> tuple[str, Collect]:
    """An ``n``-frame FFV1 clip through a Pipeline with ``models`` as workers: (how it ended, the sink)."""
    clip = tmp_path / "c.mkv"
    write_clip(clip, n)
    sink = Collect()
    pipe = Pipeline(VideoSource(parse_source(str(clip))), models, Sinks(make_recorders=[lambda size, fps: sink]),
                    PipelineOptions(stats_every=0, **options), threading.Event())
    return pipe.run(), sink


def test_three_workers_keep_file_order(tmp_path):
    n = 60
    models = [SlowAndUneven(s) for s in range(3)]
    ended, sink = run_clip(tmp_path, n, models)
    assert ended == "eos"
    assert sink.indices == list(range(n))
    assert sum(m.calls for m in models) == n and all(m.calls > 0 for m in models)  # all three worked


def test_max_frames_counts_frames_not_workers(tmp_path):
    ended, sink = run_clip(tmp_path, 30, [SlowAndUneven(s) for s in range(2)], max_frames=7)
    assert ended == "max-frames"
    assert sink.indices == list(range(7))
