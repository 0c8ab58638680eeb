"""Audio: any rate/channels/format -> 16 kHz mono; frame-count rule; windows; speech activity."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llia_core.audio import (Audio, encode_audio, frame_count, frame_windows, load_audio, log_mel, resample)
from llia_core.audio.activity import detect_speech
from llia_core.errors import AudioError


def tone(sr, seconds=1.0, freq=440.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.4 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, 1) if channels > 1 else x


def peak_hz(wave: torch.Tensor) -> float:
    spec = np.abs(np.fft.rfft(wave.numpy()))
    return float(np.fft.rfftfreq(len(wave), 1 / 16000)[spec.argmax()])


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2])
def test_file_any_rate_and_channels(tmp_path, sr, channels):
    path = tmp_path / f"a{sr}.wav"
    sf.write(path, tone(sr, 1.5, channels=channels), sr)
    audio = load_audio(path)
    assert abs(audio.waveform.shape[0] - 24000) <= 1
    assert audio.waveform.dtype == torch.float32
    assert abs(peak_hz(audio.waveform) - 440) < 3


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_compressed_formats(tmp_path, fmt):
    path = tmp_path / f"a.{fmt}"
    sf.write(path, tone(44100, 2.0, channels=2), 44100, format=fmt.upper() if fmt != "ogg" else "OGG")
    audio = load_audio(path)
    assert abs(audio.duration - 2.0) < 0.06
    assert abs(peak_hz(audio.waveform) - 440) < 3


def test_in_memory_and_comfy_dict():
    a = load_audio((torch.from_numpy(tone(22050, 1.0)).float(), 22050))
    b = load_audio({"waveform": torch.from_numpy(tone(48000, 1.0, channels=2).T).float()[None], "sample_rate": 48000})
    c = load_audio((np.int16(tone(16000, 1.0) * 32767), 16000))
    for x in (a, b, c):
        assert abs(x.duration - 1.0) < 1e-3 and abs(peak_hz(x.waveform) - 440) < 3
    trimmed = load_audio((torch.from_numpy(tone(16000, 3.0)).float(), 16000), start=1.0, duration=1.5)
    assert trimmed.waveform.shape[0] == 24000


def test_resample_keeps_frequency():
    x = torch.from_numpy(tone(44100, 1.0, freq=1000.0)).float()
    y = resample(x, 44100, 16000)
    assert y.shape[0] == 16000 and abs(peak_hz(y) - 1000) < 2


@pytest.mark.parametrize("content,words", [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "could not decode|not an audio file"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "could not decode"),
    (b"", "could not decode"),
])
def test_corrupt_files(tmp_path, content, words):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=words):
        load_audio(path)


def test_truncated_mp3_and_missing_and_empty(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="empty"):
        load_audio((np.zeros(0, np.float32), 16000))
    with pytest.raises(AudioError, match="NaN"):
        load_audio((np.full(100, np.nan, np.float32), 16000))
    with pytest.raises(AudioError, match="past its end"):
        load_audio((np.zeros(1600, np.float32), 16000), start=5.0)


def test_frame_count_rule():
    assert frame_count(2.0, 25) == 50
    assert frame_count(2.0001, 25) == 51
    assert frame_count(0.04, 25) == 1
    assert frame_count(1 / 3 * 3, 30) == 30
    assert frame_count(10.0, 29.97) == 300
    with pytest.raises(AudioError, match="shorter than one video frame"):
        frame_count(0.0, 25)


def test_short_audio_is_an_error_not_an_empty_video():
    with pytest.raises(AudioError, match="shorter than one video frame"):
        encode_audio((np.zeros(100, np.float32), 16000), 25)


def test_log_mel_time_alignment():
    wave = np.zeros(32000, np.float32)
    wave[16000:16800] = tone(16000, 0.05, 1000.0)
    mel = log_mel(torch.from_numpy(wave))
    assert mel.shape[1] == 80 and abs(mel.shape[0] - 201) <= 1
    energy = mel.exp().sum(1)
    assert 99 <= int(energy.argmax()) <= 106


def test_frame_windows_place_a_burst_in_its_frame():
    wave = np.zeros(16000 * 2, np.float32)
    t0 = 1.0  # burst at 1.00-1.04 s: video frame 25 at 25 fps
    wave[16000:16640] = tone(16000, 0.04, 800.0)
    mel = log_mel(torch.from_numpy(wave))
    w = frame_windows(mel, 50, 25, context=2, mel_per_token=4)
    assert w.shape == (50, 5, 320)
    loud = w[:, 2].reshape(50, 4, 80).exp().sum((1, 2))
    assert int(loud.argmax()) == int(t0 * 25)
    # the same burst is in the +1 token of the previous frame
    loud_next = w[:, 3].reshape(50, 4, 80).exp().sum((1, 2))
    assert int(loud_next.argmax()) == 24


def test_frame_windows_scale_to_an_hour():
    mel = torch.zeros(360000, 80)
    w = frame_windows(mel, 90000, 25)
    assert w.shape == (90000, 5, 320)


def _speech_like(sr=16000, seconds=6.0, seed=0):
    """Harmonic complex (F0 ~140 Hz, harmonics to 3 kHz) with a 4 Hz syllable rhythm; silent 2-3.5 s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 140 * (1 + 0.05 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 21))
    syllables = 0.35 + 0.65 * np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    wave = (0.2 * voiced * syllables + rng.normal(0, 0.002, t.shape)).astype(np.float32)
    wave[int(2.0 * sr):int(3.5 * sr)] = rng.normal(0, 0.002, int(1.5 * sr))
    return wave


def test_speech_activity_on_speech_with_silence():
    wave = _speech_like()
    speech = detect_speech(torch.from_numpy(wave), 150, 25)
    assert speech[:45].float().mean() > 0.7
    assert speech[55:85].float().mean() < 0.1  # the inserted 1.5 s silence (frames 50-87, minus hangover)
    noisy = wave + np.random.default_rng(1).normal(0, 0.003, wave.shape).astype(np.float32)
    s2 = detect_speech(torch.from_numpy(noisy), 150, 25)
    assert s2[55:85].float().mean() < 0.1 and s2[:45].float().mean() > 0.6


def test_steady_noise_and_silence_are_not_speech():
    noise = np.random.default_rng(0).normal(0, 0.05, 16000 * 3).astype(np.float32)
    assert detect_speech(torch.from_numpy(noise), 75, 25).float().mean() < 0.1
    assert not detect_speech(torch.zeros(16000 * 3), 75, 25).any()
    feats = encode_audio((np.zeros(16000 * 2, np.float32), 16000), 25)
    assert feats.num_frames == 50 and not feats.speech.any()


@settings(max_examples=40, deadline=None)
@given(seconds=st.floats(0.05, 4.0), fps=st.sampled_from([12.0, 24.0, 25.0, 29.97, 30.0, 50.0, 60.0]),
       sr=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]))
def test_frame_count_and_video_audio_duration_property(seconds, fps, sr):
    n = int(seconds * sr)
    try:
        feats = encode_audio((np.zeros(n, np.float32) + 0.01, sr), fps)
    except AudioError as err:
        assert "shorter than one video frame" in str(err)
        return
    duration = feats.audio.duration
    assert feats.num_frames == math.ceil(duration * fps - 1e-6)
    assert feats.windows.shape[0] == feats.num_frames == feats.speech.shape[0]
    video_audio = feats.waveform_for_video()
    assert abs(video_audio.shape[0] / 16000 - feats.num_frames / fps) <= 1 / 16000 + 1e-9
    assert isinstance(feats.audio, Audio)
