"""Synthetic voices whose timing is known: espeak-ng through its C library, with word and phoneme times.

The audio-to-mouth model must hear the words, not the voice: avatars are very often driven by a plain
TTS, whose formant-synthesised speech sounds like no person in the training videos. espeak-ng reports
where every word and phoneme starts in its output (``espeakEVENT_WORD`` / ``espeakEVENT_PHONEME``),
so a GRID sentence read by a synthetic voice can be given the real speaker's mouth motion of the same
sentence, word by word (``mouth_data.synthetic_tracks``). The library is read with ``ctypes``
(Debian's ``libespeak-ng1``, installed with ``espeak-ng``); nothing here is needed at inference.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass

import numpy as np

# voices of espeak-ng's English (language + variant): several people's worth of pitch, formants and timbre
ESPEAK_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-us+f1", "en-us+f2",
                 "en-us+f3", "en-us+f4", "en-us+f5", "en-us+m1", "en-us+m2", "en-us+m3", "en-us+m4", "en-us+m5",
                 "en-us+m6", "en-us+m7", "en+klatt", "en+klatt2", "en+klatt3", "en+klatt4", "en+f2", "en+m3",
                 "en+Andy", "en+Annie", "en+belinda", "en+benjamin", "en+david", "en+edward", "en+linda", "en+max",
                 "en+paul", "en+steph", "en+robert", "en+michel", "en+john", "en+aunty", "en+grandpa", "en+Lee")

_EVENT_WORD, _EVENT_END, _EVENT_PHONEME = 1, 5, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class TimedSpeech:
    """16 kHz float32 speech, its words [(start s, end s, text)] and phonemes [(start s, end s, espeak name)]."""

    waveform: np.ndarray
    words: list
    phonemes: list


class _Espeak:
    """One espeak-ng instance (the library is not re-entrant: calls are serialised)."""

    def __init__(self):
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        self.rate = int(self.lib.espeak_Initialize(2, 0, None, 1))  # synchronous, phoneme events on
        if self.rate <= 0:
            raise OSError("espeak-ng could not start (espeak_Initialize failed)")
        self.lock = threading.Lock()
        self._samples: list = []
        self._events: list = []
        self._cb = _CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self._cb)

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != 0:
            e = events[i]
            name = bytes(e.id.string).split(b"\0")[0].decode("ascii", "replace") if e.type == _EVENT_PHONEME else ""
            self._events.append((e.type, e.sample, e.text_position, e.length, name))
            i += 1
        return 0

    def speak(self, text: str, voice: str, words_per_minute: int, pitch: int) -> tuple[np.ndarray, list]:
        with self.lock:
            self._samples, self._events = [], []
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}; see espeak-ng --voices")
            self.lib.espeak_SetParameter(1, int(words_per_minute), 0)  # espeakRATE
            self.lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH
            raw = text.encode()
            self.lib.espeak_Synth(raw, len(raw) + 1, 0, 0, 0, 0, None, None)
            self.lib.espeak_Synchronize()
            wave = np.concatenate(self._samples) if self._samples else np.zeros(0, np.int16)
            return wave, list(self._events)


@functools.lru_cache(maxsize=1)
def _engine() -> _Espeak:
    return _Espeak()


def have_espeak_library() -> bool:
    try:
        _engine()
        return True
    except OSError:
        return False


def espeak_timed(text: str, voice: str = "en-us", words_per_minute: int = 175, pitch: int = 50) -> TimedSpeech:
    """``text`` read by espeak-ng's ``voice``: 16 kHz speech and the time of each word and phoneme.

    A word runs from its first phoneme to the next phoneme event (the next word's first, or a pause);
    the last word ends at the sentence's end.
    """
    from scipy.signal import resample_poly

    engine = _engine()
    raw, events = engine.speak(text, voice, words_per_minute, pitch)
    rate = engine.rate
    wave = raw.astype(np.float32) / 32768.0
    if rate != 16000:
        g = np.gcd(rate, 16000)
        wave = resample_poly(wave, 16000 // g, rate // g).astype(np.float32)
    end = len(raw) / rate
    phones = [(s / rate, name) for kind, s, _, _, name in events if kind == _EVENT_PHONEME]
    phonemes = [(t, phones[i + 1][0] if i + 1 < len(phones) else end, name) for i, (t, name) in enumerate(phones)]
    word_starts = [(s / rate, text[p - 1:p - 1 + n]) for kind, s, p, n, _ in events if kind == _EVENT_WORD]
    words = []
    for k, (t, w) in enumerate(word_starts):
        nxt = word_starts[k + 1][0] if k + 1 < len(word_starts) else end
        own = [ph for ph in phonemes if t - 1e-6 <= ph[0] < nxt - 1e-6 and not ph[2].startswith("_")]
        if own:
            words.append((own[0][0], own[-1][1], w))
    return TimedSpeech(wave, words, phonemes)
