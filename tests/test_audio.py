"""Audio: any rate/channels/format -> 16 kHz mono; frame-count rule; log-mel and windows; speech activity."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llia_core.audio import (SAMPLE_RATE, Audio, AudioFeatures, detect_speech, encode_audio, frame_count, frame_rms,
                             frame_windows, load_audio, log_mel, resample)
from llia_core.audio.features import LOG_SILENCE
from llia_core.errors import AudioError, LLIAError

RATES = [8000, 16000, 22050, 44100, 48000, 96000]


# ----------------------------------------------------------------------------------------- helpers

def tone(sr: int, seconds: float = 1.0, freq: float = 440.0, channels: int = 1, amp: float = 0.4) -> np.ndarray:
    """(T,) or (T, channels) float32 sine (channels get different gains, so the mean is testable)."""
    t = np.arange(int(round(sr * seconds))) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return x.astype(np.float32)
    return np.stack([x * (1 - 0.3 * c) for c in range(channels)], 1).astype(np.float32)


def peak_hz(wave: torch.Tensor, sr: int = SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(wave.numpy() * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[spec.argmax()])


def write_av(path, sr: int = 44100, seconds: float = 1.5, codec: str = "aac", audio: bool = True,
             video: bool = False) -> None:
    """Encode a 440 Hz stereo tone (and/or a few grey video frames) with PyAV."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=25) if video else None
        stream = out.add_stream(codec, rate=sr) if audio else None
        if stream is not None:
            stream.layout = "stereo"  # before any packet is muxed: that opens the codecs
        if vs is not None:
            vs.width = vs.height = 32
            vs.pix_fmt = "yuv420p"
            for i in range(int(seconds * 25)):
                img = np.full((32, 32, 3), (i * 7) % 255, np.uint8)
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
        if stream is not None:
            data = np.ascontiguousarray(tone(sr, seconds, channels=2).T)
            size, pts = stream.codec_context.frame_size or 1024, 0
            for k in range(0, data.shape[1], size):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, k:k + size]), format="fltp",
                                                   layout="stereo")
                frame.sample_rate, frame.pts = sr, pts
                pts += frame.samples
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)


def speech_like(sr: int = 16000, seconds: float = 9.0, phrases=((0.5, 2.5), (3.5, 5.0), (6.2, 8.0)), f0: float = 120.0,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Voiced speech stand-in and its truth: a harmonic complex (100-3000 Hz, gliding pitch) with a
    4 Hz syllable envelope that dips to zero between syllables, only inside ``phrases`` (seconds)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    pitch = f0 * (1 + 0.25 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voiced = sum(((k * pitch >= 100) & (k * pitch <= 3000)) / k * np.sin(k * phase + rng.uniform(0, 6))
                 for k in range(1, int(3000 / (0.75 * f0)) + 1))
    envelope = np.abs(np.sin(np.pi * 4 * t + rng.uniform(0, 3))) ** 1.5
    truth = np.zeros(t.shape, bool)
    for a, b in phrases:
        truth[int(a * sr):int(b * sr)] = True
    x = voiced * envelope * truth
    return (0.1 * x / np.sqrt(np.mean(x[truth] ** 2))).astype(np.float32), truth


def noise(kind: str, n: int, seed: int = 1, sr: int = 16000) -> np.ndarray:
    """Unit-RMS steady noise: white, pink (1/f power) or mains hum with harmonics."""
    rng = np.random.default_rng(seed)
    if kind == "hum":
        t = np.arange(n) / sr
        y = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)) + 0.01 * rng.normal(0, 1, n)
    else:
        y = rng.normal(0, 1, n)
        if kind == "pink":
            spec = np.fft.rfft(y)
            spec[1:] /= np.sqrt(np.fft.rfftfreq(n, 1 / sr)[1:])
            spec[0] = 0
            y = np.fft.irfft(spec, n)
    return (y / y.std()).astype(np.float32)


def truth_per_frame(truth: np.ndarray, sr: int, num_frames: int, fps: float) -> np.ndarray:
    idx = np.minimum(((np.arange(num_frames) + 0.5) / fps * sr).astype(int), len(truth) - 1)
    return truth[idx]


def f1(pred: torch.Tensor, truth: np.ndarray) -> float:
    p = pred.numpy()
    tp, fp, fn = (p & truth).sum(), (p & ~truth).sum(), (~p & truth).sum()
    return 2 * tp / max(2 * tp + fp + fn, 1)


# ------------------------------------------------------------------------------------ loading (io)

@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_file_any_rate_and_channels(tmp_path, sr, channels):
    path = tmp_path / f"tone{sr}.wav"
    sf.write(path, tone(sr, 1.5, channels=channels), sr, subtype="PCM_16" if sr % 2 else "FLOAT")
    audio = load_audio(path)
    assert isinstance(audio, Audio) and audio.sample_rate == 16000
    assert audio.waveform.dtype == torch.float32 and audio.waveform.ndim == 1
    assert abs(audio.waveform.shape[0] - 24000) <= 1
    assert abs(audio.duration - 1.5) < 1e-4
    assert abs(peak_hz(audio.waveform) - 440) < 2
    gain = 1.0 if channels == 1 else 0.85  # channel mean of gains 1.0 and 0.7
    assert abs(audio.waveform[2000:-2000].abs().max().item() - 0.4 * gain) < 0.01


@pytest.mark.parametrize("sr", RATES)
def test_in_memory_layouts(sr):
    mono = tone(sr, 1.0)
    stereo = tone(sr, 1.0, channels=2)  # (T, C)
    sources = [
        (mono, sr),  # numpy (T,)
        (torch.from_numpy(stereo.T.copy()), sr),  # torch (C, T)
        (torch.from_numpy(stereo.T.copy())[None], sr),  # (B, C, T)
        {"waveform": torch.from_numpy(stereo.T.copy())[None].repeat(2, 1, 1), "sample_rate": sr},  # ComfyUI AUDIO
        (stereo, sr),  # (T, C) as soundfile returns it
        (np.round(mono * 32767).astype(np.int16), sr),  # int PCM
        [torch.from_numpy(mono).double(), float(sr)],
    ]
    for source in sources:
        audio = load_audio(source)
        assert abs(audio.waveform.shape[0] - 16000) <= 1
        assert audio.waveform.dtype == torch.float32
        assert abs(peak_hz(audio.waveform) - 440) < 2


def test_comfy_audio_takes_the_first_batch_item():
    wave = torch.zeros(2, 1, 16000)
    wave[0, 0] = torch.from_numpy(tone(16000, 1.0, freq=1000.0))
    wave[1, 0] = torch.from_numpy(tone(16000, 1.0, freq=300.0))
    audio = load_audio({"waveform": wave, "sample_rate": 16000})
    assert abs(peak_hz(audio.waveform) - 1000) < 2


def test_int_pcm_is_scaled_to_unit_range():
    x = tone(16000, 0.5, amp=1.0).astype(np.float64)
    for dtype, scale, offset in ((np.int16, 32767, 0), (np.int32, 2 ** 31 - 1, 0), (np.uint8, 127, 128)):
        audio = load_audio((np.round(x * scale + offset).astype(dtype), 16000))
        w = audio.waveform
        assert 0.98 < w.max().item() <= 1.0 and -1.0 <= w.min().item() < -0.98


@pytest.mark.parametrize("up,down", [(8000, 16000), (22050, 16000), (44100, 16000), (96000, 16000), (16000, 48000)])
def test_resample_keeps_frequency_and_length(up, down):
    x = torch.from_numpy(tone(up, 1.0, freq=1000.0))
    y = resample(x, up, down)
    assert y.dtype == torch.float32 and y.shape == (down,)
    assert abs(peak_hz(y, down) - 1000) < 2
    assert torch.equal(y, resample(x, up, down))  # deterministic
    batched = resample(torch.stack([x, -x]), up, down)  # last dim is time
    assert batched.shape == (2, down) and torch.allclose(batched[0], y) and torch.allclose(batched[1], -y)


def test_resample_removes_what_cannot_be_represented():
    high = torch.from_numpy(tone(48000, 1.0, freq=10000.0))  # above 8 kHz Nyquist: must not fold to 6 kHz
    assert resample(high, 48000, 16000)[1000:-1000].abs().max() < 0.01
    keep = torch.from_numpy(tone(48000, 1.0, freq=7000.0))
    assert resample(keep, 48000, 16000)[1000:-1000].abs().max() > 0.35


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_compressed_formats_round_trip(tmp_path, fmt):
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, tone(44100, 2.0, channels=2), 44100, format={"flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}[fmt])
    audio = load_audio(path)
    assert abs(audio.duration - 2.0) < 0.06
    assert abs(peak_hz(audio.waveform) - 440) < 2


@pytest.mark.parametrize("name,video", [("tone.m4a", False), ("clip.mp4", True)])
def test_aac_and_video_audio_tracks(tmp_path, name, video):
    path = tmp_path / name
    write_av(path, 44100, 1.5, video=video)
    audio = load_audio(path)
    assert abs(audio.duration - 1.5) < 0.06
    assert abs(peak_hz(audio.waveform) - 440) < 2
    part = load_audio(path, start=0.5, duration=0.5)
    assert abs(part.waveform.shape[0] - 8000) <= 1


def test_start_and_duration_trim(tmp_path):
    ramp = np.arange(48000, dtype=np.float32) / 48000  # 3 s at 16 kHz, value = time / 3
    trimmed = load_audio((ramp, 16000), start=1.0, duration=1.5)
    assert torch.equal(trimmed.waveform, torch.from_numpy(ramp[16000:40000]))
    assert load_audio((ramp, 16000), start=2.5).waveform.shape[0] == 8000
    assert load_audio((ramp, 16000), start=2.5, duration=10).waveform.shape[0] == 8000  # clipped at the end
    path = tmp_path / "tone.wav"
    sf.write(path, tone(44100, 3.0), 44100)
    assert abs(load_audio(path, start=1.0, duration=0.5).waveform.shape[0] - 8000) <= 1
    assert abs(load_audio(path, start=2.0).waveform.shape[0] - 16000) <= 1


def _png_bytes() -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def _wav_bytes() -> bytes:
    import io as _io

    buf = _io.BytesIO()
    sf.write(buf, tone(16000, 1.0), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.parametrize("name,content", [
    ("photo.wav", _png_bytes()),  # an image renamed .wav
    ("noise.wav", np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()),
    ("empty.wav", b""),
    ("header.wav", _wav_bytes()[:30]),  # cut inside the header
    ("cut.wav", _wav_bytes()[:2000]),  # header promises 1 s, the file ends after 60 ms
    ("text.mp3", b"this is not an mp3 " * 50),
])
def test_undecodable_files_say_so(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError, match="could not decode") as err:
        load_audio(path)
    assert name in str(err.value) and "re-export" in str(err.value)


def test_video_without_audio_track(tmp_path):
    path = tmp_path / "silent_movie.mp4"
    write_av(path, audio=False, video=True)
    with pytest.raises(AudioError, match="no audio track"):
        load_audio(path)


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "speech.wav"
    with pytest.raises(AudioError, match="does not exist") as err:
        load_audio(missing)
    assert str(missing) in str(err.value)
    with pytest.raises(AudioError, match="not a file"):
        load_audio(tmp_path)


@pytest.mark.parametrize("source,kwargs,words", [
    ((np.zeros(0, np.float32), 16000), {}, "empty"),
    ({"waveform": torch.zeros(1, 2, 0), "sample_rate": 44100}, {}, "empty"),
    ((np.full(100, np.nan, np.float32), 16000), {}, "NaN"),
    ((np.array([0.0, np.inf, 0.0]), 16000), {}, "infinite"),
    ((torch.zeros(0, 2, 100), 16000), {}, "batch is empty"),
    ((np.zeros(100), 0), {}, "sample rate"),
    ((np.zeros(100), None), {}, "sample rate"),
    ((np.zeros((2, 2, 2, 100)), 16000), {}, "shape"),
    ((np.zeros(100, np.complex64), 16000), {}, "real"),
    ({"audio": np.zeros(100)}, {}, "waveform"),
    ((np.zeros(100),), {}, "pair"),
    (torch.zeros(100), {}, "cannot read audio"),
    ((np.zeros(1600), 16000), {"start": -1.0}, "negative"),
    ((np.zeros(1600), 16000), {"start": 5.0}, "past the end"),
    ((np.zeros(1600), 16000), {"start": 0.1}, "past the end"),
    ((np.zeros(1600), 16000), {"duration": 0.0}, "not positive"),
    ((np.zeros(1600), 16000), {"start": float("nan")}, "not finite"),
])
def test_bad_input_is_an_audio_error(source, kwargs, words):
    with pytest.raises(AudioError, match=words) as err:
        load_audio(source, **kwargs)
    assert isinstance(err.value, LLIAError) and isinstance(err.value, ValueError)
    assert ";" in str(err.value)  # problem; fix


def test_file_nan_samples_and_past_end(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, np.nan, 0.1] * 100, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(path)
    path = tmp_path / "short.flac"
    sf.write(path, tone(16000, 1.0), 16000)
    with pytest.raises(AudioError, match="past the end"):
        load_audio(path, start=2.0)
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(path)


def test_silent_audio_is_valid():
    feats = encode_audio((np.zeros(32000, np.float32), 16000), 25)
    assert feats.num_frames == 50 and not feats.speech.any() and torch.all(feats.rms == 0)
    assert torch.allclose(feats.windows, torch.full_like(feats.windows, LOG_SILENCE))


# ------------------------------------------------------------------------------ frames and features

def test_frame_count_rule():
    assert frame_count(2.0, 25) == 50
    assert frame_count(0.04, 25) == 1
    assert frame_count(1 / 3, 30) == 10
    assert frame_count(0.1 * 3, 10) == 3  # 3.0000000000000004 frames
    assert frame_count(10.0, 29.97) == 300  # 299.7
    assert frame_count(2.0 + 1 / 16000, 25) == 51  # one more sample does need another frame
    assert frame_count(2.0 + 1e-9, 25) == 50  # float noise does not
    assert frame_count(16001 / 16000, 1) == 2
    assert frame_count(3600.0, 25) == 90000


@pytest.mark.parametrize("seconds,fps", [(0.0, 25), (0.039, 25), (0.01, 30), (1e-9, 120)])
def test_less_than_one_frame_is_an_error(seconds, fps):
    with pytest.raises(AudioError, match="shorter than one video frame") as err:
        frame_count(seconds, fps)
    assert f"{math.ceil(1000 / fps)} ms" in str(err.value)


def test_short_audio_fails_at_encode_not_at_load():
    audio = load_audio((np.zeros(100, np.float32), 16000))  # 6 ms: loads fine
    assert audio.waveform.shape[0] == 100
    with pytest.raises(AudioError, match="shorter than one video frame"):
        encode_audio((np.zeros(100, np.float32), 16000), 25)


@pytest.mark.parametrize("fps", [0, 0.5, 121, float("nan"), "fast"])
def test_encode_audio_validates_fps(fps):
    with pytest.raises(AudioError, match="1 to 120"):
        encode_audio((tone(16000, 1.0), 16000), fps)


def _reference_log_mel(wave: np.ndarray) -> np.ndarray:
    """The documented recipe, in plain numpy: reflect-pad 256, periodic Hann 400 centred in 512, hop 160."""
    import librosa

    padded = np.pad(wave.astype(np.float64), 256, mode="reflect")
    window = np.zeros(512)
    window[56:456] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    frames = np.stack([padded[k * 160:k * 160 + 512] for k in range(1 + len(wave) // 160)])
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    basis = librosa.filters.mel(sr=16000, n_fft=512, n_mels=80, fmin=55, fmax=7600)
    return np.log(np.maximum(power @ basis.T, 1e-5))


def test_log_mel_matches_the_recipe_and_is_time_aligned():
    wave = np.zeros(32000, np.float32)
    wave[16000:16800] = tone(16000, 0.05, 1000.0)  # 1.00-1.05 s
    wave += np.random.default_rng(0).normal(0, 1e-3, wave.shape).astype(np.float32)
    mel = log_mel(torch.from_numpy(wave))
    assert mel.shape == (201, 80) and mel.dtype == torch.float32
    assert np.allclose(mel.numpy(), _reference_log_mel(wave), atol=1e-3)
    loud = mel.exp().sum(1)
    assert 100 <= int(loud.argmax()) <= 105 and loud[95] < loud.max() / 100 and loud[110] < loud.max() / 100
    assert log_mel(torch.zeros(16000)).eq(math.log(1e-5)).all()
    assert log_mel(torch.zeros(16000), n_mels=40).shape == (101, 40)
    assert log_mel(torch.zeros(10)).shape[0] >= 1  # shorter than a window still gives a frame


def test_frame_windows_place_a_burst_in_its_frame():
    wave = np.zeros(16000 * 2, np.float32)
    wave[16000:16640] = tone(16000, 0.04, 800.0)  # 1.00-1.04 s: video frame 25 at 25 fps
    w = frame_windows(log_mel(torch.from_numpy(wave)), 50, 25, context=2, mel_per_token=4)
    assert w.shape == (50, 5, 320) and w.dtype == torch.float32
    energy = w.reshape(50, 5, 4, 80).exp().sum((2, 3))  # (frame, token)
    assert int(energy[:, 2].argmax()) == 25  # centre token of the frame that contains it
    assert int(energy[:, 3].argmax()) == 24  # the next token of the frame before
    assert int(energy[:, 1].argmax()) == 26  # the previous token of the frame after


@pytest.mark.parametrize("fps", [12.0, 29.97, 60.0])
def test_frame_windows_follow_time_at_any_fps(fps):
    wave = np.zeros(16000 * 3, np.float32)
    i = 40 if fps > 20 else 20
    t = (i + 0.5) / fps  # the centre of frame i
    a = int((t - 0.01) * 16000)
    wave[a:a + 320] = tone(16000, 0.02, 800.0)
    n = frame_count(3.0, fps)
    w = frame_windows(log_mel(torch.from_numpy(wave)), n, fps, context=1, mel_per_token=2, token_seconds=0.04)
    assert w.shape == (n, 3, 160)
    found = int(w[:, 1].exp().sum(1).argmax())
    assert found == i if fps <= 30 else abs(found - i) <= 1  # above 25 fps tokens (40 ms) overlap frames


def test_frame_windows_edges_read_silence():
    wave = torch.from_numpy(tone(16000, 1.0))
    w = frame_windows(log_mel(wave), 30, 25)  # 1 s of audio, frames run to 1.2 s
    assert torch.all(w[0, 0, :160] == LOG_SILENCE)  # token -2 of frame 0 is all before t = 0
    assert torch.all(w[-1, -1] == LOG_SILENCE)  # past the end
    assert w[10, 2].max() > 0


def test_frame_windows_scale_to_an_hour():
    mel = torch.zeros(360001, 80)
    mel[-1] = 1.0  # the last mel frame: only the last video frames' windows reach it
    w = frame_windows(mel, 90000, 25)
    assert w.shape == (90000, 5, 320)
    # the last frame's own token reaches half way to the last mel frame; past the end reads log-silence
    assert torch.all(w[-1, 2, 240:] == 0.5) and torch.all(w[-1, 4] == LOG_SILENCE)
    assert torch.all(w[2:-3] == 0) and torch.all(w[0, 0, :160] == LOG_SILENCE)


# ------------------------------------------------------------------------------------ speech activity

@pytest.mark.parametrize("kind,snr_db", [("clean", None), ("white", 10), ("pink", 10), ("hum", 5)])
def test_speech_activity_f1(kind, snr_db):
    x, truth = speech_like()
    if kind != "clean":
        x = x + noise(kind, len(x)) * 0.1 * 10 ** (-snr_db / 20)
    n = frame_count(len(x) / 16000, 25)
    speech = detect_speech(torch.from_numpy(x), n, 25)
    assert speech.shape == (n,) and speech.dtype == torch.bool
    assert f1(speech, truth_per_frame(truth, 16000, n, 25)) >= 0.9


@pytest.mark.parametrize("sr,f0", [(8000, 100.0), (44100, 220.0), (96000, 140.0)])
def test_speech_activity_any_input_rate(sr, f0):
    x, truth = speech_like(sr=sr, f0=f0, seed=2)
    x = x + noise("white", len(x), sr=sr) * 0.1 * 10 ** (-15 / 20)
    audio = load_audio((x, sr))
    for fps in (25, 60):
        n = frame_count(audio.duration, fps)
        assert f1(detect_speech(audio.waveform, n, fps), truth_per_frame(truth, sr, n, fps)) >= 0.9


def test_speech_activity_hangover_and_min_speech():
    x, _ = speech_like(seconds=4.0, phrases=((0.5, 1.5), (1.7, 2.7)))  # a 0.2 s pause between words
    x[int(3.2 * 16000):int(3.25 * 16000)] = x[int(1.0 * 16000):int(1.05 * 16000)]  # a 50 ms click of voice
    speech = detect_speech(torch.from_numpy(x), 100, 25)
    assert speech[int(1.55 * 25):int(1.65 * 25)].all()  # the pause is bridged
    assert not speech[int(3.0 * 25):].any()  # the 50 ms burst is dropped
    unbridged = detect_speech(torch.from_numpy(x), 100, 25, hangover=0.0)
    assert not unbridged[int(1.55 * 25):int(1.65 * 25)].all()


@pytest.mark.parametrize("kind", ["white", "pink", "hum"])
def test_steady_noise_is_not_speech(kind):
    x = noise(kind, 16000 * 6) * 0.05
    assert detect_speech(torch.from_numpy(x), 150, 25).float().mean() < 0.05
    stepped = x.copy()
    stepped[len(x) // 2:] *= 5  # a fan switching on is louder, still not a voice
    assert detect_speech(torch.from_numpy(stepped), 150, 25).float().mean() < 0.05


def test_silence_is_not_speech():
    assert not detect_speech(torch.zeros(16000 * 3), 75, 25).any()
    dither = torch.from_numpy(np.random.default_rng(0).normal(0, 2 ** -16, 16000 * 3).astype(np.float32))
    assert not detect_speech(dither, 75, 25).any()
    assert detect_speech(torch.zeros(16000), 0, 25).shape == (0,)


def test_speech_activity_at_extreme_fps():
    x, truth = speech_like()
    for fps in (1.0, 120.0):
        n = frame_count(len(x) / 16000, fps)
        speech = detect_speech(torch.from_numpy(x), n, fps)
        assert speech.shape == (n,)
        if fps == 120.0:
            assert f1(speech, truth_per_frame(truth, 16000, n, fps)) >= 0.9


def test_frame_rms():
    x = torch.from_numpy(tone(16000, 1.0, freq=500.0, amp=0.5))
    rms = frame_rms(x, 30, 25)  # the last 5 frames are past the audio
    assert rms.shape == (30,) and rms.dtype == torch.float32
    assert torch.allclose(rms[:25], torch.full((25,), 0.5 / math.sqrt(2)), atol=1e-3)
    assert torch.all(rms[25:] == 0)
    step = torch.cat([torch.zeros(8000), torch.ones(8000)])
    r = frame_rms(step, 3, 1.5)  # frames of 2/3 s: [0, .667) [.667, 1.333) [1.333, 2)
    assert torch.allclose(r, torch.tensor([math.sqrt(0.25), math.sqrt(0.5), 0.0]), atol=1e-3)


# ------------------------------------------------------------------------------------ encode_audio

def test_encode_audio_from_a_file_and_a_comfy_dict(tmp_path):
    x, _ = speech_like(sr=44100, seconds=4.0, phrases=((1.0, 3.0),))
    path = tmp_path / "speech.wav"
    sf.write(path, np.stack([x, x], 1), 44100, subtype="FLOAT")
    a = encode_audio(path, 25)
    b = encode_audio({"waveform": torch.from_numpy(np.stack([x, x]))[None], "sample_rate": 44100}, 25)
    for feats in (a, b):
        assert isinstance(feats, AudioFeatures)
        assert feats.num_frames == 100 and feats.fps == 25.0
        assert feats.windows.shape == (100, 5, 320)
        assert feats.speech.shape == feats.rms.shape == (100,)
        assert feats.speech[30:70].all() and not feats.speech[:20].any() and not feats.speech[80:].any()
    assert torch.allclose(a.windows, b.windows, atol=1e-4)
    c = encode_audio(path, 30, start=1.0, duration=2.0, n_mels=40, context=1, mel_per_token=2)
    assert c.num_frames == 60 and c.windows.shape == (60, 3, 80)


def test_slice_and_waveform_for_video():
    feats = encode_audio((tone(16000, 2.01), 16000), 30)  # 60.3 frames -> 61
    assert feats.num_frames == 61
    video_audio = feats.waveform_for_video()
    assert video_audio.shape[0] == round(61 / 30 * 16000)  # padded past the audio's end
    assert torch.all(video_audio[feats.audio.waveform.shape[0]:] == 0)
    parts = [feats.slice(0, 20), feats.slice(20, 45), feats.slice(45, 61)]
    assert [p.num_frames for p in parts] == [20, 25, 16]
    assert torch.equal(torch.cat([p.windows for p in parts]), feats.windows)
    assert torch.equal(torch.cat([p.speech for p in parts]), feats.speech)
    assert torch.equal(torch.cat([p.audio.waveform for p in parts]), feats.audio.waveform)
    assert parts[1].waveform_for_video().shape[0] == round(25 / 30 * 16000)
    for bad in ((5, 5), (-1, 3), (10, 62)):
        with pytest.raises(AudioError, match="frame range"):
            feats.slice(*bad)
    trimmed = encode_audio((tone(16000, 2.0), 16000), 25, duration=1.0)
    assert trimmed.waveform_for_video().shape[0] == 16000


@settings(max_examples=40, deadline=None)
@given(samples=st.integers(1, 4 * 96000), fps=st.sampled_from([1.0, 12.0, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0,
                                                                 59.94, 60.0, 120.0]),
       sr=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]))
def test_frame_count_and_video_duration_property(samples, fps, sr):
    wave = np.full(samples, 0.01, np.float32)
    try:
        feats = encode_audio((wave, sr), fps)
    except AudioError as err:
        assert "shorter than one video frame" in str(err)
        assert samples / sr * fps < 1 + 1e-3  # only when the audio really is under a frame (+ resampling rounding)
        return
    duration = feats.audio.duration
    assert abs(feats.audio.waveform.shape[0] - samples * 16000 / sr) <= 1
    n = feats.num_frames
    assert n == math.ceil(duration * fps - 1e-6) >= 1
    assert n / fps >= duration - 1e-6 / fps and (n - 1) / fps < duration  # covers the audio, no empty frame
    assert feats.windows.shape[0] == feats.speech.shape[0] == feats.rms.shape[0] == n
    video_audio = feats.waveform_for_video()
    assert abs(video_audio.shape[0] / 16000 - n / fps) <= 0.5 / 16000 + 1e-12
