"""Source URIs (jetson-utils' conventions) and credential redaction."""
from __future__ import annotations

import pytest

from deblur.runtime.errors import InputError
from deblur.video.uri import DEMO_CLIP, parse_source, redact


@pytest.fixture
def clip(tmp_path):
    p = tmp_path / "clip.mp4"
    p.write_bytes(b"not decoded by parse_source")
    return p


@pytest.mark.parametrize("text, kind, location", [
    ("0", "camera", "/dev/video0"),
    ("3", "camera", "/dev/video3"),
    ("/dev/video2", "camera", "/dev/video2"),
    ("v4l2:///dev/video1", "camera", "/dev/video1"),
    ("v4l2://", "camera", "/dev/video0"),
    ("csi://0", "csi", "0"),
    ("csi://1", "csi", "1"),
] + [(url, "network", url) for url in (  # a network URL goes to FFmpeg as it is
    "rtsp://10.0.0.5:8554/cam", "RTSP://host/x", "rtsps://host/x", "http://host:8080/video.mjpg", "udp://@:1234",
    "tcp://host:9000")])  # srt:// only where FFmpeg has it: tests/video/test_video_output_deadlines.py
def test_live_kinds(text, kind, location):
    uri = parse_source(text)
    assert (uri.kind, uri.location, uri.text) == (kind, location, text)
    assert uri.live
    assert uri.fps is None


def test_files_and_folders(tmp_path, clip, monkeypatch):
    assert parse_source(str(clip)).kind == "file"
    assert parse_source(str(clip)).location == str(clip)
    assert parse_source(f"file://{clip}").location == str(clip)  # file:///abs/path
    monkeypatch.chdir(tmp_path)
    rel = parse_source("file://clip.mp4")
    assert (rel.kind, rel.location) == ("file", "clip.mp4")
    assert parse_source("  clip.mp4  ").kind == "file"  # surrounding blanks are not part of the name
    folder = tmp_path / "frames"
    folder.mkdir()
    for text in (str(folder), f"file://{folder}", "frames", "file://frames/"):
        uri = parse_source(text)
        assert uri.kind == "images", text
        assert not uri.live
    assert not parse_source(str(clip)).live


def test_synthetic():
    uri = parse_source("synthetic://demo?fps=30")
    assert (uri.kind, uri.location, uri.fps) == ("synthetic", str(DEMO_CLIP), 30.0)
    assert uri.live
    assert parse_source("synthetic://demo").fps == 30.0
    assert parse_source("synthetic://?fps=12.5").fps == 12.5
    own = parse_source(f"synthetic://{DEMO_CLIP}?fps=60")
    assert (own.location, own.fps) == (str(DEMO_CLIP), 60.0)


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("   ", "empty"),
    ("/no/such/clip.mp4", "not found"),
    ("file:///no/such/clip.mkv", "not found"),
    ("bogus://x", "unknown source scheme"),
    ("ftp://host/clip.mp4", "unknown source scheme"),
    ("csi://front", "bad CSI camera"),
    ("rtsp://", "no host"),
    ("rtsp:///path", "no host"),
    ("synthetic://demo?fps=0", "bad fps"),
    ("synthetic://demo?fps=-5", "bad fps"),
    ("synthetic://demo?fps=abc", "bad fps"),
    ("synthetic://demo?fps=5000", "bad fps"),
    ("synthetic:///no/such/clip.mp4?fps=30", "not found"),
])
def test_errors_are_input_errors(text, words):
    with pytest.raises(InputError) as e:
        parse_source(text)
    assert words in str(e.value)
    assert e.value.exit_code == 2
    assert e.value.hint  # every error says what to do


@pytest.mark.parametrize("text", ["rtsp://admin:hunter2@", "bogus://admin:hunter2@cam/x"])
def test_errors_never_echo_credentials(text):
    with pytest.raises(InputError) as e:
        parse_source(text)
    assert "hunter2" not in str(e.value) and "admin" not in str(e.value)


@pytest.mark.parametrize("text, expected", [
    ("rtsp://user:secret@host:8554/path", "rtsp://***@host:8554/path"),
    ("rtsp://user@host/path", "rtsp://***@host/path"),
    ("rtsp://:secret@host/path", "rtsp://***@host/path"),
    ("http://u:p@10.0.0.1/video.mjpg", "http://***@10.0.0.1/video.mjpg"),
    ("RTMP://Admin:Pw@host/live", "RTMP://***@host/live"),
    ("srt://a:b@host:9000", "srt://***@host:9000"),
    ("rtsp://host:8554/path", "rtsp://host:8554/path"),  # nothing to hide
    ("rtsp://host/path?user=a@b", "rtsp://host/path?user=a@b"),  # an @ after the path is not user info
    ("clip.mp4", "clip.mp4"),
])
def test_redact(text, expected):
    assert redact(text) == expected


def test_redact_inside_messages():
    msg = ("[Errno 111] Connection refused: 'rtsp://cam:Pa55word@10.0.0.5:554/stream1' "
           "(then rtsps://other:Zq9secret@192.168.1.2/x, and rtsp://ok-host/y)")
    out = redact(msg)
    assert "Pa55word" not in out and "Zq9secret" not in out
    assert "cam:" not in out and "other:" not in out
    assert out.startswith("[Errno 111] Connection refused: 'rtsp://***@10.0.0.5:554/stream1'")
    assert "rtsps://***@192.168.1.2/x" in out and "rtsp://ok-host/y" in out
    assert redact(RuntimeError("open rtsp://u:p@h/x failed")) == "open rtsp://***@h/x failed"


@pytest.mark.parametrize("password", ["p@ss", "a@b@c", "we:ird", "s%40x", "!$&'()*+,;="])
def test_redact_passwords_with_special_characters(password):
    """Camera passwords often hold punctuation; FFmpeg splits user info at the last @ before the host."""
    url = f"rtsp://admin:{password}@10.0.0.9:554/live"
    out = redact(f"cannot open '{url}': timed out")
    assert password not in out, out
    assert out == "cannot open 'rtsp://***@10.0.0.9:554/live': timed out"


def test_str_of_a_source_is_redacted():
    uri = parse_source("rtsp://user:topsecret@cam.local:8554/live")
    assert "topsecret" not in str(uri) and "user" not in str(uri)
    assert str(uri) == "rtsp://***@cam.local:8554/live"
    assert uri.location == "rtsp://user:topsecret@cam.local:8554/live"  # FFmpeg still gets the credentials


def test_small_ones_from_the_hostile_first_day(tmp_path):
    """#17 defect 22 (two of them): a zero-byte file said FFmpeg's "Invalid data" instead of "empty"; file://
    URLs were not percent-decoded, so a name with a space was "not found"."""
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty \(0 bytes\)"):
        parse_source(str(empty))
    spaced = tmp_path / "my clip.mkv"
    spaced.write_bytes(b"x")
    src = parse_source("file://" + str(spaced).replace(" ", "%20"))
    assert src.kind == "file" and src.location == str(spaced)
