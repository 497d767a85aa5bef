"""The fastest safe CPU backend by default: the pure rule (``pick``) and the real decision with real
ONNX Runtime and OpenVINO sessions, its cache and what overrides it."""
import json

import pytest

from deblur.runtime import backend_choice as bc
from deblur.runtime.backend_choice import Candidate, pick
from deblur.runtime.zoo import MODELS_DIR

ONNX = MODELS_DIR / "default.onnx"


def _c(backend, ms, passed=True, precision=None):
    return Candidate(backend, precision, p50_ms=ms, passed=passed)


@pytest.mark.parametrize("cands, want", [
    ([_c("onnxruntime", 100), _c("openvino", 70, precision="f32")], 1),  # clearly faster: chosen
    ([_c("onnxruntime", 100), _c("openvino", 98, precision="f32")], 0),  # inside the margin: the reference stays
    ([_c("onnxruntime", 100), _c("openvino", 50, False, "bf16"), _c("openvino", 90, precision="f32")], 2),  # unsafe never
    ([_c("onnxruntime", 100), _c("openvino", 50, False, "bf16")], 0),
    ([_c("onnxruntime", None, False), _c("openvino", 80, precision="f32")], 1),  # the reference failed to load
])
def test_pick_takes_the_fastest_candidate_that_passed_its_gate(cands, want):
    assert pick(cands) is cands[want]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(bc.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "backend_choice.json"


def test_decision_is_measured_once_then_cached(cache, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    cands = bc.candidates()
    first = bc.choose(ONNX, threads=1)
    assert first.backend in {c.backend for c in cands}
    if len(cands) < 2:
        assert first.reason == "the only CPU backend installed" and not cache.exists()
        return
    recorded = {(c["backend"], c["precision"]): c for c in first.candidates}
    assert all(c["passed"] and c["p50_ms"] > 0 for c in recorded.values()), recorded  # the real backends pass here
    again_picked = pick([Candidate(**c) for c in first.candidates])
    assert (again_picked.backend, again_picked.precision) == (first.backend, first.options.get("precision"))
    data = json.loads(cache.read_text())
    assert len(data) == 1 and next(iter(data.values()))["backend"] == first.backend

    def no_measuring(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(bc, "measure", no_measuring)
    assert bc.choose(ONNX, threads=1) is first  # a second worker of the same process: decided already
    bc._DECIDED.clear()  # a new process: the file cache
    again = bc.choose(ONNX, threads=1)
    assert again.reason.startswith("cached") and first.reason in again.reason
    assert (again.backend, again.options) == (first.backend, first.options)

    # another thread count, or another model (other bytes), is another decision
    with pytest.raises(AssertionError, match="measured again"):
        bc.choose(ONNX, threads=2)
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(ONNX))
    proto.doc_string = "another model"
    other = tmp_path / "other.onnx"
    onnx.save(proto, str(other))
    with pytest.raises(AssertionError, match="measured again"):
        bc.choose(other, threads=1)


def test_corrupt_or_unwritable_cache_decides_again_without_failing(cache, monkeypatch):
    pytest.importorskip("onnxruntime")
    if len(bc.candidates()) < 2:
        pytest.skip("one CPU backend installed: nothing to choose")
    cache.parent.mkdir(parents=True)
    for bad in ("{not json", '{"x": 1}', "[1, 2]"):
        cache.write_text(bad)
        bc._DECIDED.clear()
        assert not bc.choose(ONNX, threads=1).reason.startswith("cached")
        assert len(json.loads(cache.read_text())) >= 1  # rewritten whole, readable
    key = next(iter(json.loads(cache.read_text())))
    cache.write_text(json.dumps({key: {"backend": "tensorrt", "options": {}}}))  # not a candidate here: decide again
    bc._DECIDED.clear()
    assert bc.choose(ONNX, threads=1).backend in ("onnxruntime", "openvino")
    cache.unlink()

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("deblur.runtime.fileio.atomic_write_text", disk_full)
    bc._DECIDED.clear()
    assert bc.choose(ONNX, threads=1).backend  # a camera must not stop because the cache cannot be written
    assert not cache.exists()


def test_missing_parity_photos_keep_the_reference_uncached(cache, monkeypatch, tmp_path):
    if len(bc.candidates()) < 2:
        pytest.skip("one CPU backend installed: nothing to choose")
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(bc, "PARITY_IMAGES", tmp_path / "empty")
    bc._DECIDED.clear()
    choice = bc.choose(ONNX, threads=1)
    assert choice.backend == "onnxruntime" and "parity photos are missing" in choice.reason and not cache.exists()


def test_deblurrer_uses_the_choice_and_a_named_backend_wins(cache):
    pytest.importorskip("onnxruntime")
    from deblur.runtime import Deblurrer

    with Deblurrer("default", backend="onnxruntime") as d:
        assert d.backend_name == "onnxruntime" and d.info["choice"] == "named"
    assert not cache.exists()  # nothing measured for a named backend
    with Deblurrer("default", threads=1) as d:
        entry = next(iter(json.loads(cache.read_text()).values())) if cache.exists() else {"backend": "onnxruntime"}
        assert d.backend_name == entry["backend"]  # what the decision recorded on disk
        assert d.info["choice"] and d.info["precision"] in ("fp32", "bf16", "fp16")
