"""The phones heard in speech, from PocketSphinx's English acoustic model: what the mouth model hears
besides the log-mel.

Why: an hour of speech video is too little to learn to hear words in voices never heard, and lip sync
on new people is mostly that. PocketSphinx's acoustic model (CMU, BSD licence, shipped in its PyPI
wheel) was trained on many hundreds of speakers; its phone decoder (``allphone`` search, no words)
says which of 39 English phones (and silence) sounds every 10 ms. Measured in leave-people-out folds
over 34 people filmed in the wild, the same mouth model with these phones beside the log-mel followed
the real mouths at r = 0.34 within speech against 0.28 on the log-mel alone (24 of 34 people better).

Streaming, so live and offline hear the same: ``PhoneStream`` decodes the audio in ``CHUNK`` steps
in order and keeps, for every 10 ms frame, the phone its best path gave **``lag`` frames after the
frame** (labels still change while later sound arrives). A frame's label is so fixed ``lag`` frames
after it, whatever comes later, and live mode, hearing the same audio in the same steps, reads the
same labels as an offline run. The decoder restarts every ``RESTART_SECONDS`` (its search grows with
the utterance), at the same audio times offline and live.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

from ..errors import AudioError

PHONES = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
          "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W",
          "Y", "Z", "ZH")
_INDEX = {p: i for i, p in enumerate(PHONES)}
RATE = 16000
FRAME = 160  # samples per 10 ms phone frame (the log-mel's rate)
CHUNK = 640  # samples decoded per step (40 ms)
RESTART_SECONDS = 10.0
UNKNOWN = -1  # a frame whose label is not fixed yet (or lies past the audio)


@functools.lru_cache(maxsize=1)
def _model_paths() -> tuple[str, str]:
    try:
        import pocketsphinx
    except ImportError:
        raise AudioError("the mouth model of this checkpoint hears phones, which need PocketSphinx: "
                         "pip install pocketsphinx") from None
    root = pocketsphinx.get_model_path()
    return os.path.join(root, "en-us", "en-us"), os.path.join(root, "en-us", "en-us-phone.lm.bin")


def have_phones() -> bool:
    try:
        _model_paths()
    except AudioError:
        return False
    return True


def _decoder():
    from pocketsphinx import Decoder

    hmm, phone_lm = _model_paths()
    return Decoder(hmm=hmm, allphone=phone_lm, lm=None, dict=None, lw=2.0, loglevel="FATAL")


class PhoneStream:
    """Phone labels of a stream of 16 kHz audio, each fixed ``lag`` frames (10 ms) after its frame.

    ``feed(samples)`` as audio arrives (any sizes: it is decoded in ``CHUNK`` steps); ``labels`` holds
    every fixed label so far (int8 indices into ``PHONES``), from the first sample fed (``span`` reads
    any frames, ``forget`` drops old ones: a live session runs for hours). ``finish()`` fixes the rest
    at the end of the audio.
    """

    def __init__(self, lag: int):
        self.lag = int(lag)
        self._dec = _decoder()
        self._pending = np.zeros(0, np.int16)
        self._labels: list[np.ndarray] = []
        self.fixed = 0  # frames whose label is fixed
        self.forgotten = 0  # frames dropped from the front of ``labels`` (``forget``)
        self._utt_start = 0  # first frame of the current utterance
        self._heard = 0  # frames fed to the decoder so far
        self._dec.start_utt()

    @property
    def labels(self) -> np.ndarray:
        if len(self._labels) > 1:
            self._labels = [np.concatenate(self._labels)]
        return self._labels[0] if self._labels else np.zeros(0, np.int8)

    def _path(self, upto: int) -> np.ndarray:
        """The current best path's label of the utterance's frames [utt_start, upto)."""
        lab = np.zeros(max(0, upto - self._utt_start), np.int8)
        for seg in self._dec.seg() or ():
            # a PocketSphinx frame starts at its 10 ms step and spans 25.6 ms: centred a frame later
            a, b = seg.start_frame + 1, seg.end_frame + 2
            lab[max(0, a):max(0, min(b, len(lab)))] = _INDEX.get(seg.word, 0)
        return lab

    def span(self, k0: int, k1: int) -> np.ndarray:
        """(k1 - k0,) int64 labels of frames [k0, k1); ``UNKNOWN`` where not fixed yet, forgotten or before 0."""
        out = np.full(max(0, k1 - k0), UNKNOWN, np.int64)
        lab = self.labels
        a, b = max(k0, self.forgotten), min(k1, self.forgotten + lab.size)
        if b > a:
            out[a - k0:b - k0] = lab[a - self.forgotten:b - self.forgotten]
        return out

    def forget(self, before: int) -> None:
        """Drop the labels of frames before ``before``."""
        cut = min(max(0, int(before) - self.forgotten), self.labels.size)
        if cut:
            self._labels = [self.labels[cut:]]
            self.forgotten += cut

    def _fix(self, upto: int, lab: np.ndarray) -> None:
        if upto > self.fixed:
            self._labels.append(lab[self.fixed - self._utt_start:upto - self._utt_start])
            self.fixed = upto

    def feed(self, samples) -> None:
        pcm = np.asarray(samples)
        if pcm.dtype != np.int16:
            pcm = (np.clip(np.asarray(pcm, np.float32), -1, 1) * 32767).astype(np.int16)
        self._pending = np.concatenate([self._pending, pcm.reshape(-1)])
        restart = int(RESTART_SECONDS * RATE / FRAME)
        while self._pending.size >= CHUNK:
            chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
            self._dec.process_raw(chunk.tobytes(), False, False)
            self._heard += CHUNK // FRAME
            self._fix(self._heard - self.lag, self._path(self._heard - self.lag))
            if self._heard - self._utt_start >= restart:
                self._end_utterance()
                self._dec.start_utt()

    def _end_utterance(self) -> None:
        self._dec.end_utt()
        self._fix(self._heard, self._path(self._heard))
        self._utt_start = self._heard

    def finish(self) -> np.ndarray:
        """Decode what is left (padded to a whole step) and fix every label; returns ``labels``."""
        if self._pending.size:
            self.feed(np.zeros(CHUNK - self._pending.size, np.int16))
        self._end_utterance()
        return self.labels


class PhoneTrack:
    """The phones of a whole waveform (a tensor, an array or an ``io.WaveformFile``): ``one_hot(k0, k1)`` for
    10 ms frames [k0, k1) (centred at k * 10 ms, as ``log_mel``'s frames), the same labels as
    ``phone_labels`` of the whole waveform.

    Decoded from the first request on, in order, by a thread of its own that keeps ``AHEAD`` frames past
    the furthest request (inline, every clip waited for its audio's decoding; all at once, the decoding
    held Python's lock, which PocketSphinx keeps while it works, just when the first frames were being
    made). A request waits only for labels not decoded yet; ``prefetch`` starts the decoding before the
    first request (while the portrait is prepared), so the first clip need not wait for it at all."""

    classes = len(PHONES)
    STEP = 8 * CHUNK  # 0.32 s decoded at a time: the first frame waits for little more than its own audio
    AHEAD = 100  # frames (1 s) decoded past the furthest request

    def __init__(self, waveform, lag: int):
        import threading

        self.waveform, self.lag = waveform, int(lag)
        self.length = int(waveform.shape[-1])
        self._ready = threading.Condition()
        self._labels = np.zeros(0, np.int8)
        self._wanted = 0  # the furthest frame asked for
        self._done = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        import threading
        import weakref

        from .io import read_span

        me = weakref.ref(self)  # the thread holds no reference to the track: it stops when the track goes
        wave, length, lag, ready, step, ahead = self.waveform, self.length, self.lag, self._ready, self.STEP, self.AHEAD

        def wanted() -> int | None:
            track = me()
            return None if track is None else track._wanted

        def decode():
            try:
                stream, fed = PhoneStream(lag), 0
                while fed < length:
                    with ready:  # far enough ahead: wait for the next request (or the track to go)
                        while (w := wanted()) is not None and fed // FRAME > w + ahead:
                            ready.wait(0.5)
                        if w is None:
                            return
                    b = min(length, fed + step)
                    stream.feed(np.asarray(read_span(wave, fed, b), np.float32).reshape(-1))
                    fed = b
                    if fed >= length:
                        stream.finish()
                    track = me()
                    if track is None:  # nobody will ask any more
                        return
                    with ready:
                        track._labels, track._done = stream.labels, fed >= length
                        ready.notify_all()
                    del track
            except BaseException as exc:  # handed to the next request
                track = me()
                if track is not None:
                    with ready:
                        track._error, track._done = exc, True
                        ready.notify_all()

        self._thread = threading.Thread(target=decode, name="llia-phones", daemon=True)
        self._thread.start()

    def prefetch(self) -> None:
        """Start decoding now: the first ``AHEAD`` frames are ready before anything asks for them."""
        with self._ready:
            if self._thread is None:
                self._start()

    def labels(self, k0: int, k1: int) -> np.ndarray:
        with self._ready:
            self._wanted = max(self._wanted, int(k1))
            self._ready.notify_all()
            if self._thread is None:
                self._start()
            self._ready.wait_for(lambda: self._done or self._labels.size >= k1)
            if self._error is not None:
                raise AudioError(f"decoding the phones failed ({self._error}); reinstall pocketsphinx") from self._error
            lab = self._labels[max(0, k0):max(0, k1)]
        out = np.zeros(max(0, k1 - k0), np.int8)  # past the decoded end: silence
        out[:lab.size] = lab
        return out

    def one_hot(self, k0: int, k1: int) -> torch.Tensor:
        return one_hot(self.labels(k0, k1))


def phone_labels(waveform, lag: int) -> np.ndarray:
    """(1 + T // 160,) int8 phone indices of a whole 16 kHz waveform, every 10 ms (frame k centred at
    k * 10 ms, as ``log_mel``'s), exactly as a ``PhoneStream`` fed the same audio fixes them."""
    wave = torch.as_tensor(waveform).reshape(-1).float().numpy()
    stream = PhoneStream(lag)
    stream.feed(wave)
    labels = stream.finish()
    n = 1 + wave.size // FRAME
    out = np.zeros(n, np.int8)
    out[:min(n, labels.size)] = labels[:n]
    return out


def one_hot(labels: np.ndarray | torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """(T,) phone indices -> (T, len(PHONES)) float; ``UNKNOWN`` -> all zeros; with ``rows``, cut or padded
    (no phone) to that many frames (a log-mel's)."""
    lab = np.asarray(labels, np.int64).reshape(-1)
    if rows is not None:
        lab = np.concatenate([lab[:rows], np.full(max(0, rows - lab.size), UNKNOWN, np.int64)])
    lab = torch.from_numpy(lab)
    out = torch.zeros(lab.numel(), len(PHONES))
    known = lab >= 0
    out[known.nonzero().flatten(), lab[known]] = 1.0
    return out


__all__ = ["PHONES", "PhoneStream", "PhoneTrack", "UNKNOWN", "have_phones", "one_hot", "phone_labels"]
