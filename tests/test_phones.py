"""The phones the mouth model hears (``audio/phones.py``): streamed as live mode hears them, the same offline,
and read into the mouth model's windows the same eagerly, lazily and from a live excerpt."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from llia_core.audio import encode_audio, load_audio
from llia_core.audio.features import lazy_mouth_windows, log_mel, mouth_windows
from llia_core.audio.phones import PHONES, PhoneStream, PhoneTrack, one_hot, phone_labels
from llia_core.config import MouthModelConfig
from llia_core.models.mouth_model import AudioToMouth
from llia_core.training.mouth_data import Utterance, frame_centres, gather_windows

pytest.importorskip("pocketsphinx")

SPEECH = "llia_core/assets/speech.wav"


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    return load_audio(SPEECH).waveform[:16000 * 5]


@pytest.fixture(scope="module")
def labels(speech) -> np.ndarray:
    return phone_labels(speech, 8)


def test_silence_is_silence_and_speech_is_heard_as_phones(speech, labels):
    assert labels.shape == (1 + speech.shape[0] // 160,) and labels.dtype == np.int8
    quiet = phone_labels(torch.zeros(16000 * 2), 8)
    assert np.all(quiet == PHONES.index("SIL"))
    loud = torch.from_numpy(np.abs(speech.numpy())).unfold(0, 1600, 1600).amax(1)  # 100 ms peaks
    speaking = np.repeat(loud.numpy() > 0.05, 10)[:labels.size]
    # in speech nearly every 10 ms has a phone, and many different ones; in the pauses mostly silence
    assert np.mean(labels[:speaking.size][speaking] != 0) > 0.8
    assert len(set(labels[labels != 0].tolist())) >= 15


def test_a_stream_fed_in_any_pieces_fixes_the_same_labels_as_the_whole_waveform(speech, labels):
    rng = np.random.default_rng(0)
    stream = PhoneStream(8)
    at, fixed_when = 0, []
    while at < speech.shape[0]:
        step = int(rng.integers(1, 3000))
        stream.feed(speech[at:at + step].numpy())
        at += step
        fixed_when.append((min(at, speech.shape[0]), stream.labels.copy()))
    final = stream.finish()
    assert np.array_equal(final[:labels.size], labels[:final.size])
    # a label, once fixed, never changes, and is fixed within lag + one step of being heard
    for heard, seen in fixed_when:
        assert np.array_equal(seen, final[:seen.size])
        assert seen.size >= heard // 160 - 8 - 4 - 1
    # decoded lazily as far as asked
    track = PhoneTrack(speech, 8)
    assert np.array_equal(track.labels(100, 140), labels[100:140])
    assert np.array_equal(track.labels(0, labels.size + 5)[:labels.size], labels)


def test_the_model_never_hears_a_phone_not_fixed_yet():
    cfg = MouthModelConfig(phones=len(PHONES), phone_lag=8)
    model = AudioToMouth(cfg).eval()
    w = torch.cat([torch.randn(4, cfg.window_frames, cfg.n_mels) - 5, torch.zeros(4, cfg.window_frames, len(PHONES))], 2)
    w[:, :, cfg.n_mels] = 1
    later = w.clone()
    later[:, -cfg.phone_lag:, cfg.n_mels:] = torch.rand(4, cfg.phone_lag, len(PHONES))
    earlier = w.clone()
    earlier[:, -cfg.phone_lag - 1, cfg.n_mels:] = 0
    earlier[:, -cfg.phone_lag - 1, cfg.n_mels + 5] = 1
    with torch.no_grad():
        assert torch.equal(model(w), model(later))
        assert not torch.allclose(model(w), model(earlier))
    with pytest.raises(ValueError, match="windows"):
        model(w[..., :cfg.n_mels])


def test_windows_with_phones_are_the_same_eager_lazy_sliced_live_and_as_training_gathers_them(speech, labels):
    cfg = MouthModelConfig(phones=len(PHONES))
    fps = 25.0
    n = int(speech.shape[0] / 16000 * fps)
    mel = log_mel(speech, cfg.n_mels)
    eager = mouth_windows(mel, n, fps, cfg.past_frames, cfg.future_frames, one_hot(labels))
    assert eager.shape == (n, cfg.window_frames, cfg.channels)
    lazy = lazy_mouth_windows(speech, n, fps, cfg.n_mels, cfg.past_frames, cfg.future_frames, cfg.phone_lag)
    assert torch.equal(lazy[40:60], eager[40:60]) and torch.equal(lazy[:], eager)
    feats = encode_audio((speech, 16000), fps)
    assert torch.equal(feats.slice(30, 50).mouth_windows_for(cfg)[:], eager[30:50])
    # outside the audio: log-silence in the bands, no phone at all
    assert torch.all(eager[0, :30, :cfg.n_mels] < -11) and torch.all(eager[0, :30, cfg.n_mels:] == 0)
    # training reads the same windows from an utterance's rows
    u = Utterance("s", "p", "wild", mel, torch.zeros(n, 6), torch.ones(n, 6, dtype=torch.bool),
                  torch.ones(n, dtype=torch.bool), fps, phones=torch.from_numpy(labels))
    from llia_core.audio.features import mouth_fill

    gathered = gather_windows(u.rows(cfg), frame_centres(n, fps), cfg.past_frames, cfg.future_frames,
                              fill=mouth_fill(cfg.n_mels, cfg.phones))
    assert torch.allclose(gathered, eager, atol=1e-4)
    # without labels an utterance cannot feed a model that hears phones
    with pytest.raises(ValueError, match="phone labels"):
        Utterance("s", "p", "wild", mel, u.targets, u.valid, u.speech, fps).rows(cfg)


def test_a_long_stream_forgets_old_labels_and_reads_the_rest_the_same(speech, labels):
    stream = PhoneStream(8)
    stream.feed(speech.numpy())
    stream.finish()
    before = stream.span(-5, 300)
    assert np.all(before[:5] == -1) and np.array_equal(before[5:], labels[:300])
    stream.forget(200)
    after = stream.span(150, 300)
    assert np.all(after[:50] == -1) and np.array_equal(after[50:], labels[200:300])
    assert stream.labels.size == stream.fixed - 200 and np.all(stream.span(stream.fixed, stream.fixed + 3) == -1)


def test_a_prefetched_track_decodes_before_it_is_asked_and_gives_the_same_labels(speech, labels):
    track = PhoneTrack(speech, 8)
    track.prefetch()
    deadline = time.time() + 30
    while track._labels.size < PhoneTrack.AHEAD and time.time() < deadline:
        time.sleep(0.01)
    ahead = track._labels.size
    # it decodes the first second on its own, then waits for requests instead of decoding everything
    assert PhoneTrack.AHEAD <= ahead < labels.size
    assert np.array_equal(track.labels(0, labels.size), labels)
