"""Long audio streams: block-wise resampling, a waveform on disk and lazily computed windows give the
same numbers as the in-memory path, so an hour of audio can run with flat memory."""

import gc
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import llia_core.audio as audio_mod
from llia_core.audio import (LazyWindows, StreamResampler, WaveformFile, detect_speech, encode_audio, frame_rms,
                             frame_windows, load_audio, log_mel, resample)
from llia_core.checkpoints import save_model
from llia_core.cli import main
from llia_core.video_io import Mp4Writer, read_video


@pytest.mark.parametrize("orig,target", [(44100, 16000), (16000, 48000), (8000, 16000), (96000, 16000),
                                         (22050, 16000), (16000, 16000)])
def test_stream_resampler_equals_whole_resample(orig, target):
    rng = np.random.default_rng(orig)
    x = rng.normal(0, 0.1, orig * 13 + 7).astype(np.float32)
    whole = resample(torch.from_numpy(x), orig, target).numpy()
    r = StreamResampler(orig, target)
    parts, i = [], 0
    while i < len(x):  # uneven pieces, some smaller than the filter, some longer than a block
        k = int(rng.integers(1, orig * 7))
        parts.append(r.push(x[i:i + k]))
        i += k
    parts.append(r.finish())
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape == (math.ceil(len(x) * target / orig),)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


@pytest.mark.parametrize("fps", [25.0, 30.0, 12.5])
def test_lazy_windows_equal_whole_track_windows(fps):
    rng = np.random.default_rng(1)
    wave = torch.from_numpy(rng.normal(0, 0.1, 16000 * 75 + 123).astype(np.float32))  # > one 60 s mel block
    n = math.ceil(wave.shape[0] / 16000 * fps)
    eager = frame_windows(log_mel(wave), n, fps, 2, 4, 0.04)
    lazy = LazyWindows(wave, n, fps, 80, 2, 4, 0.04)
    assert lazy.shape == eager.shape
    for a, b in [(0, 1), (0, 40), (int(59.9 * fps), int(60.3 * fps)), (n - 3, n), (n // 2, n // 2 + 16)]:
        assert torch.equal(lazy[a:b], eager[a:b]), (a, b)
    idx = torch.arange(int(30 * fps) - 2, int(30 * fps) + 14)  # motion frames + a clip, as the pipeline asks
    assert torch.equal(lazy[idx], eager[idx])
    assert torch.equal(lazy.to_tensor(), eager)


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """12 s of 44.1 kHz stereo speech-like sound with pauses."""
    from llia_core.training.data.speech import synth_speech

    path = tmp_path_factory.mktemp("long") / "talk.wav"
    rng = np.random.default_rng(2)
    pieces = []
    for _ in range(3):  # 2.5 s of synthetic voice, 1.5 s of room noise
        pieces += [synth_speech(2.5, rng), np.zeros(24000, np.float32)]
    wave16 = np.concatenate(pieces)
    wave = resample(torch.from_numpy(wave16), 16000, 44100).numpy() + rng.normal(0, 0.002, int(44100 * 12))
    sf.write(path, np.stack([wave, 0.5 * wave], 1).astype(np.float32), 44100)
    return path


def test_long_file_spills_to_disk_with_the_same_samples(long_wav):
    memory = load_audio(long_wav).waveform
    spilled = load_audio(long_wav, spill_after=4.0)
    assert isinstance(spilled.waveform, WaveformFile) and spilled.waveform.shape == memory.shape
    assert spilled.waveform.path.exists() and spilled.waveform.path.stat().st_size == 4 * memory.shape[0]
    np.testing.assert_allclose(spilled.waveform[0:memory.shape[0]].numpy(), memory.numpy(), atol=1e-6)
    np.testing.assert_allclose(spilled.waveform[16000 * 5:16000 * 5 + 999].numpy(),
                               memory[16000 * 5:16000 * 5 + 999].numpy(), atol=1e-6)
    # trimming works the same way
    part = load_audio(long_wav, start=2.0, duration=7.5, spill_after=4.0).waveform
    want = load_audio(long_wav, start=2.0, duration=7.5).waveform
    assert len(part) == want.shape[0] == 120000
    np.testing.assert_allclose(part[0:len(part)].numpy(), want.numpy(), atol=1e-6)
    path = spilled.waveform.path
    del spilled
    gc.collect()
    assert not path.exists()  # the temporary file goes with its object
    assert isinstance(load_audio(long_wav, spill_after=60.0).waveform, torch.Tensor)  # short stays in memory


def test_long_audio_features_match_the_in_memory_path(long_wav):
    eager = encode_audio(long_wav, 25.0)
    lazy = encode_audio(long_wav, 25.0, long_audio_seconds=4.0)
    assert isinstance(lazy.windows, LazyWindows) and isinstance(lazy.audio.waveform, WaveformFile)
    assert lazy.num_frames == eager.num_frames == 300
    assert torch.allclose(lazy.windows.to_tensor(), eager.windows, atol=1e-4)
    assert torch.equal(lazy.speech, eager.speech) and 0.3 < eager.speech.float().mean() < 0.7
    assert torch.allclose(lazy.rms, eager.rms, atol=1e-6)
    # speech detection and loudness read the file a piece at a time and agree with the tensor path
    wave = eager.audio.waveform
    assert torch.equal(detect_speech(lazy.audio.waveform, 300, 25.0), detect_speech(wave, 300, 25.0))
    assert torch.allclose(frame_rms(lazy.audio.waveform, 300, 25.0), frame_rms(wave, 300, 25.0), atol=1e-6)
    sub = lazy.slice(100, 140)
    assert sub.windows.shape[0] == 40 and torch.allclose(sub.windows, eager.windows[100:140], atol=1e-4)
    assert sub.audio.waveform.shape[0] == 40 * 640


def test_writer_streams_audio_from_disk(long_wav, tmp_path):
    audio = load_audio(long_wav, spill_after=4.0).waveform
    frames = torch.rand(250, 32, 32, 3)  # 10 s of video: the audio is trimmed to it
    out = tmp_path / "v.mp4"
    with Mp4Writer(out, 25.0, 32, 32, audio=audio) as w:
        for k in range(0, 250, 16):
            w.write(frames[k:k + 16])
    video = read_video(out)
    assert video.frames.shape[0] == 250
    assert abs(video.audio.shape[-1] / video.sample_rate - 10.0) < 0.03
    got = video.audio.reshape(-1)[: video.sample_rate * 9]  # the header's edit list drops AAC's priming
    want = resample(audio[0:160000], 16000, video.sample_rate).numpy()[: got.shape[0]]
    assert np.corrcoef(got, want)[0, 1] > 0.95  # the right sound, in the right place (AAC is lossy)


def test_cli_long_audio_path_gives_the_same_video(tiny_model, long_wav, tmp_path, monkeypatch):
    ckpt = save_model(tiny_model, tmp_path / "tiny.safetensors")
    # --pipeline off: lent cores make float rounding timing-dependent, which H.264 turns into visible
    # differences on the random tiny model's noise-like frames; this test is about the audio path
    args = ["generate", "--model", str(ckpt), "--audio", str(long_wav), "--quiet", "--seed", "1", "--duration", "6",
            "--pipeline", "off"]
    assert main(args + ["--out", str(tmp_path / "a.mp4")]) == 0
    monkeypatch.setattr(audio_mod, "LONG_AUDIO_SECONDS", 2.0)
    assert main(args + ["--out", str(tmp_path / "b.mp4")]) == 0
    a, b = read_video(tmp_path / "a.mp4"), read_video(tmp_path / "b.mp4")
    assert a.frames.shape[0] == b.frames.shape[0] == 150
    assert (a.frames.float() - b.frames.float()).abs().max() <= 2  # same frames (lazy windows differ by ~1e-6)
    assert a.frames.float().std() > 1
    np.testing.assert_allclose(a.audio, b.audio, atol=1e-3)
