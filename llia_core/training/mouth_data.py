"""What the audio-to-mouth model learns from: utterances of log-mel with per-frame mouth targets.

Real ones come from face tracks (``data/tracks.py``): the mouth targets are measured on the aligned
landmarks of every frame. Synthetic ones are GRID sentences read again by espeak-ng voices
(``data/tts.py``) and given the real speaker's mouth motion of the same sentence, mapped word by word
onto the synthetic timing (``synthetic_utterances``): the model hears many more voices say what one
person's mouth did.

Augmentation (``augment_windows``) works on the log-mel windows of a batch, where it is cheap: vocal
tract length (the mel axis stretched), speed, spectral tilt, gain, noise, reverberation and a
telephone band. The targets never change with it: the same words, the same mouth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio.features import LOG_SILENCE, log_mel
from ..models.mouth_model import MOUTH_OUTPUTS
from .data.tracks import Track
from .data.videos import mouth_measures, mouth_targets

MEL_RATE = 100.0  # log-mel frames per second


@dataclass
class Utterance:
    """One recording for the mouth model. mel (T, n_mels) at 100 fps; targets (F, 6) and valid (F, 6) per
    video frame at ``fps``; speech (F,) frames where the audio speaks (GRID: inside a word; else the
    voice-activity detector); person: whose mouth the targets are (folds hold whole people out); kind:
    "grid", "wild" or "synthetic"; source: the track it came from."""

    name: str
    person: str
    kind: str
    mel: torch.Tensor
    targets: torch.Tensor
    valid: torch.Tensor
    speech: torch.Tensor
    fps: float
    source: str = ""
    words: tuple = ()
    phones: torch.Tensor | None = None  # (T,) int8 phone labels of the mel frames (``audio.phones``), if heard

    @property
    def num_frames(self) -> int:
        return int(self.targets.shape[0])

    def rows(self, config) -> torch.Tensor:
        """(T, config.channels) what the mouth model's windows are read from: the log-mel, and the one-hot
        phones when ``config`` (a ``MouthModelConfig``) hears them."""
        if not config.phones:
            return self.mel
        if self.phones is None:
            raise ValueError(f"utterance {self.name} has no phone labels; load it with phone_lag set")
        from ..audio.phones import one_hot

        return torch.cat([self.mel, one_hot(self.phones.numpy(), rows=self.mel.shape[0])], 1)


def track_mouth(points: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 468, 3) aligned landmarks -> (F, 6) mouth targets (``MOUTH_OUTPUTS``) and (F, 6) valid.

    opening, width, roundness as the clip ingestion measures them (``videos.mouth_targets``: the lip
    gap above the video's resting gap, on the renderer's scales); jaw: nose tip to chin over the
    eye distance, above its 5th percentile; lip thickness: the outer-to-inner lip heights over the
    eye distance, against the video's median (pressed lips are thin); protrusion: how far the middle
    of the lips stands in front of the corners (the mesh's depth), against the video's median.
    """
    from ..portrait.landmarks import (CHIN, EYE_A, EYE_B, LIP_INNER_DOWN, LIP_INNER_UP, LIP_OUTER_DOWN,
                                      LIP_OUTER_UP, MOUTH_CORNERS, NOSE_TIP)

    f = points.shape[0]
    p = np.nan_to_num(points.astype(np.float64))
    good = ok & np.isfinite(points[:, :, :2].astype(np.float64)).all((1, 2))
    out = np.zeros((f, len(MOUTH_OUTPUTS)), np.float32)
    valid = np.zeros((f, len(MOUTH_OUTPUTS)), bool)
    if good.sum() < 3:
        return out, valid
    gap = np.array([mouth_measures(q[:, :2])[0] for q in p])
    width = np.array([mouth_measures(q[:, :2])[1] for q in p])
    width = np.where(good, width, np.median(width[good]))
    gap = np.where(good, gap, np.median(gap[good]))
    opening, w, rnd = mouth_targets(np.where(good, gap, 0.0), width)
    eyes = np.linalg.norm(p[:, list(EYE_A), :2].mean(1) - p[:, list(EYE_B), :2].mean(1), axis=1).clip(1e-3)
    jaw_len = np.linalg.norm(p[:, CHIN, :2] - p[:, NOSE_TIP, :2], axis=1) / eyes
    jaw = (jaw_len - np.percentile(jaw_len[good], 5)) / 0.3
    thick = (np.linalg.norm(p[:, LIP_OUTER_UP, :2] - p[:, LIP_INNER_UP, :2], axis=1)
             + np.linalg.norm(p[:, LIP_INNER_DOWN, :2] - p[:, LIP_OUTER_DOWN, :2], axis=1)) / eyes
    thick = thick / np.median(thick[good]) - 1
    corners_z = p[:, list(MOUTH_CORNERS), 2].mean(1)
    centre_z = p[:, [LIP_OUTER_UP, LIP_OUTER_DOWN], 2].mean(1)
    protrusion = (corners_z - centre_z) / eyes
    protrusion = (protrusion - np.median(protrusion[good])) / 0.1
    out[:] = np.stack([opening, w, rnd, jaw, thick, protrusion], 1)
    valid[good] = True
    return np.nan_to_num(out), valid


def cached_phone_labels(wave: torch.Tensor, lag: int, cache: Path | None = None) -> torch.Tensor:
    """``audio.phones.phone_labels`` of ``wave``, kept in ``cache`` (a .npy path) when given."""
    from ..audio.phones import phone_labels

    if cache is not None and cache.exists():
        labels = np.load(cache)
        if labels.shape[0] == 1 + wave.shape[-1] // 160:
            return torch.from_numpy(labels)
    labels = phone_labels(wave, lag)
    if cache is not None:
        np.save(cache, labels)
    return torch.from_numpy(labels)


def utterance_from_track(track: Track, n_mels: int = 80, phone_lag: int | None = None) -> Utterance:
    """A face track -> an utterance (targets from its landmarks, speech from its words or the detector;
    with ``phone_lag``, the phones heard, cached beside the track file)."""
    from ..audio import detect_speech

    wave = torch.from_numpy(track.waveform())
    phones = None
    if phone_lag is not None:
        cache = None if track.path is None else track.path.with_name(f"{track.path.stem}.phones{phone_lag}.npy")
        phones = cached_phone_labels(wave, phone_lag, cache)
    targets, valid = track_mouth(track.points, track.ok)
    if track.words:
        speech = torch.from_numpy(track.word_frames())
    else:
        speech = detect_speech(wave, track.num_frames, track.fps)
    kind = "grid" if track.person.startswith("grid_") else "wild"
    return Utterance(track.name, track.person, kind, log_mel(wave, n_mels), torch.from_numpy(targets),
                     torch.from_numpy(valid), speech, track.fps, track.name, tuple(track.words), phones)


def _time_map(synth_words: list, real_words: list) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a piecewise-linear map from synthetic time to the real recording's time: each word's
    start and end onto the real word's, 1:1 before the first word and after the last."""
    xs, ys = [], []
    for (s0, s1, _), (r0, r1, _) in zip(synth_words, real_words):
        xs += [s0, s1]
        ys += [r0, r1]
    xs, ys = np.array(xs), np.array(ys)
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], np.maximum.accumulate(ys[order])
    return xs, ys


def map_time(t: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The piecewise-linear map of ``_time_map``, extended 1:1 beyond its ends."""
    inside = np.interp(t, xs, ys)
    return np.where(t < xs[0], ys[0] - (xs[0] - t), np.where(t > xs[-1], ys[-1] + (t - xs[-1]), inside))


def synthetic_utterance(real: Utterance, voice: str, words_per_minute: int, pitch: int, n_mels: int = 80,
                        lead: float = 0.3, tail: float = 0.3, phone_lag: int | None = None) -> Utterance | None:
    """``real``'s sentence (it needs word timings) read by an espeak-ng voice, with the real mouth motion
    mapped onto the synthetic words; None when espeak splits the sentence into other words."""
    from .data.tts import espeak_timed

    text = " ".join(w for _, _, w in real.words)
    speech = espeak_timed(text, voice, words_per_minute, pitch)
    if len(speech.words) != len(real.words) or not speech.words:
        return None
    start = speech.words[0][0] - lead
    wave = speech.waveform[max(0, int(start * 16000)):]
    shift = max(0.0, start)
    words = [(a - shift, b - shift, w) for a, b, w in speech.words]
    end = words[-1][1] + tail
    wave = np.pad(wave, (0, max(0, int(end * 16000) - len(wave))))[:int(end * 16000)]
    fps = real.fps
    n = int(np.floor(end * fps))
    xs, ys = _time_map(words, list(real.words))
    t_real = map_time((np.arange(n) + 0.5) / fps, xs, ys)
    src = np.clip(t_real * fps - 0.5, 0, real.num_frames - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, real.num_frames - 1)
    frac = torch.from_numpy((src - lo).astype(np.float32))[:, None]
    targets = real.targets[lo] * (1 - frac) + real.targets[hi] * frac
    valid = real.valid[lo] & real.valid[hi]
    t = (np.arange(n) + 0.5) / fps
    inside = np.zeros(n, bool)
    for a, b, _ in words:
        inside |= (t >= a) & (t < b)
    wave_t = torch.from_numpy(wave.astype(np.float32))
    phones = None
    if phone_lag is not None:
        from ..audio.phones import phone_labels

        phones = torch.from_numpy(phone_labels(wave_t, phone_lag))
    return Utterance(f"{real.name}@{voice}:{words_per_minute}:{pitch}", real.person, "synthetic",
                     log_mel(wave_t, n_mels), targets, valid, torch.from_numpy(inside), fps, real.source, tuple(words),
                     phones)


def synthetic_utterances(reals: list[Utterance], voices: tuple[str, ...], per_sentence: int, seed: int = 0,
                         n_mels: int = 80, progress: bool = False, phone_lag: int | None = None) -> list[Utterance]:
    """``per_sentence`` synthetic readings of every real utterance with word timings (random voice,
    speed 120-220 words a minute, pitch 20-80)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    out = []
    for real in tqdm([u for u in reals if u.words], desc="synthetic voices", disable=not progress):
        for _ in range(per_sentence):
            voice = voices[int(rng.integers(len(voices)))]
            u = synthetic_utterance(real, voice, int(rng.integers(120, 221)), int(rng.integers(20, 81)), n_mels,
                                    phone_lag=phone_lag)
            if u is not None:
                out.append(u)
    return out


def frame_centres(num_frames: int, fps: float) -> torch.Tensor:
    """(F,) each video frame's centre in mel frames."""
    return (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps * MEL_RATE


def gather_windows(mel: torch.Tensor, centres: torch.Tensor, past: int, future: int,
                   speed: torch.Tensor | None = None, padded: bool = False, fill: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """(N,) centres in mel frames (float) -> (N, past + 1 + future, n_mels) windows by linear
    interpolation (log-silence outside), as ``audio.features.mouth_windows`` reads them; ``speed``
    (N,) stretches each window's time axis (> 1: the speech sounds faster). ``padded``: ``mel`` already
    ends in log-silence on both sides, further than any window reaches (a training pool); ``fill``: what
    each column reads outside (default log-silence; ``audio.features.mouth_fill``)."""
    offsets = torch.arange(-past, future + 1, dtype=torch.float64)
    pos = centres.double()[:, None] + offsets[None] * (1.0 if speed is None else speed.double()[:, None])
    lo = pos.floor().long()
    frac = (pos - lo).float()[..., None]
    n = mel.shape[0]
    if padded:
        return mel[lo.clamp(0, n - 1)] * (1 - frac) + mel[(lo + 1).clamp(0, n - 1)] * frac
    pad = torch.full((1, mel.shape[1]), LOG_SILENCE, dtype=mel.dtype) if fill is None else fill.reshape(1, -1).to(mel.dtype)
    table = torch.cat([mel, pad])

    def take(idx):
        return table[torch.where((idx >= 0) & (idx < n), idx, n)]

    return take(lo) * (1 - frac) + take(lo + 1) * frac


def augment_windows(w: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random voices and rooms on a batch of log-mel windows (N, W, n_mels): vocal tract length
    (+-15%), spectral tilt, gain, added noise (SNR 0-40 dB), reverberation and a telephone band."""
    n, length, d = w.shape

    def u(lo, hi, shape=(n,)):
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    def p(prob):
        return (torch.rand(n, generator=gen) < prob * strength).float()

    # vocal tract length: the band axis stretched about its low end
    alpha = 1 + p(0.8) * u(-0.15, 0.15)
    src = (torch.arange(d, dtype=torch.float32)[None] / alpha[:, None]).clamp(0, d - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=d - 1)
    fr = (src - lo)[:, None, :]
    w = torch.gather(w, 2, lo[:, None].expand(n, length, d)) * (1 - fr) + torch.gather(
        w, 2, hi[:, None].expand(n, length, d)) * fr
    bands = torch.linspace(-0.5, 0.5, d)
    w = w + (p(0.7) * u(-2.0, 2.0))[:, None, None] * bands + u(-1.5, 1.5)[:, None, None]
    # reverberation: each band's power smeared forward with a decay of 30-300 ms
    rev = (p(0.3) > 0).nonzero().flatten()
    if rev.numel():
        decay = torch.exp(-0.01 / u(0.03, 0.3, (rev.numel(),)))[:, None]
        power = w[rev].exp()
        acc = power[:, 0]
        out = [acc]
        for t in range(1, length):
            acc = power[:, t] + decay * acc
            out.append(acc)
        w = w.clone()
        w[rev] = (torch.stack(out, 1) * (1 - decay[:, None]) + 1e-10).log()
    # noise at an SNR against the window's loudest band energy
    noisy = p(0.5)
    level = w.amax(dim=(1, 2)) - u(0.0, 9.2)  # 0-40 dB below the peak (natural log of power)
    colour = torch.randn((n, 1, d), generator=gen) * 0.5 + torch.randn((n, length, d), generator=gen) * 0.3
    noise = level[:, None, None] + colour
    w = torch.where(noisy[:, None, None] > 0, torch.logaddexp(w, noise), w)
    # telephone band: nothing above ~3.4 kHz (mel band 52 of 80 at 55-7600 Hz)
    tel = p(0.15)
    cut = torch.arange(d) >= int(d * 0.65)
    floor = w.amin(dim=(1, 2), keepdim=True)
    w = torch.where((tel[:, None, None] > 0) & cut, floor.expand_as(w), w)
    return w
