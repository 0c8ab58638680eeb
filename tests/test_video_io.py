"""mp4 out: exact frame count, audio of the video's duration, streaming, crash safety."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from llia_core.errors import VideoError
from llia_core.video_io import Mp4Writer, partial_path, probe_video, read_video, write_mp4


def frames_with_index(n, h=64, w=64):
    f = torch.zeros(n, h, w, 3)
    for i in range(n):
        f[i, :, :, 1] = torch.linspace(0, 1, w)
        f[i, (i % 8) * 8:(i % 8) * 8 + 8, :16, 0] = 1.0  # a bright block whose position encodes i
    return f


def test_frames_and_audio_duration(tmp_path):
    t = torch.arange(32000) / 16000
    frames = frames_with_index(50)
    path = write_mp4(tmp_path / "a.mp4", frames, 25, audio=0.3 * torch.sin(2 * math.pi * 440 * t))
    info = probe_video(path)
    assert info["num_frames"] == 50 and info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert abs(info["audio_seconds"] - 2.0) < 0.05
    video = read_video(path)
    decoded = video.frames.float() / 255
    psnr = 10 * torch.log10(1 / ((decoded - frames) ** 2).mean())
    assert psnr > 30
    block_rows = decoded[:, :, :16, 0].mean(2).argmax(1) // 8
    assert block_rows.tolist() == [i % 8 for i in range(50)]


def _decoded(path, stream: str):
    """[(time from the frame's timestamp, samples or pixels)] as a player decodes them."""
    import av

    with av.open(str(path)) as c:
        return [(frame.time, frame.to_ndarray()) for frame in c.decode(**{stream: 0})]


@pytest.mark.parametrize("fps", [25, 30])
def test_picture_and_sound_play_in_sync(tmp_path, fps):
    """A white frame and a click written for the same instant decode at that instant, by timestamp and
    by counting samples: B-frames in a header without an edit list once put every picture 59 ms
    behind its sound, and the audio's timestamps jumped 59 ms after its first packet."""
    frames = np.zeros((3 * fps, 64, 64, 3), np.uint8)
    frames[fps] = 255  # t = 1 s
    audio = np.zeros(48000, np.float32)
    audio[16000:16160] = 0.9  # a click at t = 1 s (16 kHz)
    path = write_mp4(tmp_path / "sync.mp4", frames, fps, audio=audio)
    video, sound = _decoded(path, "video"), _decoded(path, "audio")
    assert [round(t * fps, 3) for t, _ in video] == list(range(3 * fps))  # frame i at i / fps
    times = np.array([t for t, _ in sound])
    lengths = np.array([x.shape[-1] for _, x in sound]) / 48000
    assert times[0] == 0 and np.allclose(np.diff(times), lengths[:-1], atol=1e-6)  # contiguous from 0
    flash = next(t for t, x in video if x.mean() > 150)
    samples = np.concatenate([x.mean(0) for _, x in sound])
    click = np.flatnonzero(np.abs(samples) > 0.3)[0] / 48000
    assert abs(flash - 1.0) < 1e-6 and abs(click - 1.0) < 0.002, (flash, click)


@pytest.mark.parametrize("audio_seconds", [1.0, 3.0])
def test_audio_is_trimmed_or_padded_to_the_video(tmp_path, audio_seconds):
    path = write_mp4(tmp_path / "b.mp4", frames_with_index(50, 31, 33), 25,
                     audio=torch.rand(int(16000 * audio_seconds)) * 0.1)
    info = probe_video(path)
    assert info["num_frames"] == 50 and (info["width"], info["height"]) == (34, 32)
    assert abs(info["audio_seconds"] - 2.0) < 0.05


def test_fractional_fps_and_streaming_equals_one_shot(tmp_path):
    frames = frames_with_index(50)
    with Mp4Writer(tmp_path / "s.mp4", 29.97, 64, 64, audio=torch.zeros(16000 * 2)) as w:
        for k in range(10):
            w.write(frames[k * 5:(k + 1) * 5])
    info = probe_video(tmp_path / "s.mp4")
    assert info["num_frames"] == 50 and abs(info["fps"] - 29.97) < 0.01
    assert not partial_path(tmp_path / "s.mp4").exists()


def test_exception_keeps_a_playable_partial(tmp_path):
    target = tmp_path / "e.mp4"
    with pytest.raises(RuntimeError):
        with Mp4Writer(target, 25, 64, 64, audio=torch.zeros(16000 * 4)) as w:
            w.write(frames_with_index(60))
            raise RuntimeError("boom")
    assert not target.exists()
    assert probe_video(partial_path(target))["num_frames"] == 60


def test_killed_process_leaves_a_playable_partial(tmp_path):
    target = tmp_path / "k.mp4"
    code = textwrap.dedent(f"""
        import sys, time, torch
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[1])!r})
        from llia_core.video_io import Mp4Writer
        w = Mp4Writer({str(target)!r}, 25, 64, 64, audio=torch.zeros(16000 * 60))
        i = 0
        while True:
            w.write(torch.rand(25, 64, 64, 3))
            i += 1
            if i == 4:
                print("ready", flush=True)
            time.sleep(0.05)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    info = probe_video(partial_path(target))
    assert info["num_frames"] >= 50  # every completed 1 s fragment survives the kill


def test_read_errors(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"definitely not a video")
    with pytest.raises(VideoError):
        read_video(tmp_path / "x.mp4")
    with pytest.raises(VideoError, match="does not exist"):
        probe_video(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="frames are"):
        with Mp4Writer(tmp_path / "y.mp4", 25, 64, 64) as w:
            w.write(np.zeros((2, 32, 32, 3), np.uint8))
