"""LiveAvatar: audio chunks in, timestamped frames out, in real time (no web code here).

One media clock (seconds since the session started) orders everything:

- the avatar's voice is appended to the *avatar track* at ``max(now + audio_delay, end of the
  track)``, so a reply plays as soon as the face can follow it; the browser plays the same audio
  at the same media times;
- the user's microphone only decides the state: speech in it means *listening* for ``user_hold``;
- a generator thread starts each clip (1 frame by default) ``lead`` seconds before its first frame
  is due and labels each frame speaking (avatar voice there), listening or idle. Each clip is
  denoised or, when the machine has no time for the diffusion model, warped: the mouth model's
  shapes move the portrait with the denoiser's last residual held (``levels.py`` chooses, from
  measured clip times, so frames stay on time). Only a machine too slow even for that skips
  ahead, to the newest frame whose audio is all in, rather than letting delay pile up.

``audio_delay`` = ``lead`` + the model's audio look-ahead (the mouth model reads 120 ms past a
frame's centre, and that mel frame 12.5 ms further) + the rest of a clip, so a frame is generated
only once all the audio it depends on is known; it is the voice-in -> face-shown latency whenever
the machine keeps up (164.5 ms with the defaults; 190 ms measured from a voice chunk to its first
speaking frame on 2 cores, the frames being 40 ms apart). With
``adaptive_lead`` the lead grows to the time a clip really takes (more latency, for machines whose
clips do not fit the lead).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..audio import Audio, AudioFeatures
from ..audio.activity import detect_speech, frame_rms
from ..audio.features import frame_windows, log_mel, mouth_reach_seconds, mouth_windows
from ..audio.io import resample
from ..clips import ClipPlan
from ..errors import AudioError, LLIAError
from ..pipeline import LLIAPipeline, SamplerConfig
from ..pipeline.core_sharing import restore_threads, use_threads
from ..pipeline.output import FrameRenderer
from ..portrait.face_motion import MotionControls
from ..portrait import DEFAULT_MAX_SIZE, Portrait
from ..portrait.paste_back import Compositor
from ..states import IDLE, LISTENING, SPEAKING, STATE_NAMES
from .levels import LEVELS, LevelGovernor, levels_named

RATE = 16000


@dataclass
class LiveFrame:
    """One generated frame: ``pts`` is its media time; ``ready`` the wall time it was produced."""

    index: int
    pts: float
    state: int
    image: np.ndarray  # (R, R, 3) uint8
    ready: float


@dataclass
class ChunkEvent:
    """An avatar-voice chunk: when it arrived (wall) and where it plays (media seconds)."""

    received: float
    start: float
    duration: float
    first_frame_ready: float | None = None
    first_frame_shown: float | None = None  # when a page shows it on time (or when it was ready, if late)
    first_frame_index: int | None = None
    page_shown: float | None = None  # when a page reported showing its first frame (wall), if one did


@dataclass
class LiveStats:
    frames: int = 0
    dropped: int = 0
    chunks: deque = field(default_factory=lambda: deque(maxlen=2000))
    switches: deque = field(default_factory=lambda: deque(maxlen=2000))  # (user chunk wall time, listening shown)
    lag: deque = field(default_factory=lambda: deque(maxlen=20000))  # (media time, ready - due) per frame
    clip_seconds: deque = field(default_factory=lambda: deque(maxlen=20000))  # wall time to make each clip
    paused_frames: int = 0  # frames of the clock that passed while nobody watched (never generated)
    drops: deque = field(default_factory=lambda: deque(maxlen=20000))  # (media time, frames skipped) per skip

    def summary(self) -> dict:
        def med(xs):
            xs = [x for x in xs if x is not None]
            return None if not xs else round(1000 * float(np.median(xs)), 1)

        def p95(xs):
            xs = [x for x in xs if x is not None]
            return None if not xs else round(1000 * float(np.percentile(xs, 95)), 1)

        ready = [c.first_frame_ready - c.received for c in self.chunks if c.first_frame_ready]
        shown = [c.first_frame_shown - c.received for c in self.chunks if c.first_frame_shown]
        switch = [s - r for r, s in self.switches if s]
        page = [c.page_shown - c.received for c in self.chunks if c.page_shown]
        out = {"frames": self.frames, "dropped": self.dropped, "paused_frames": self.paused_frames,
               "chunks": len(self.chunks),
               "latency_ready_ms_median": med(ready), "latency_shown_ms_median": med(shown),
               "latency_shown_ms_p95": p95(shown), "listen_switch_ms_median": med(switch),
               "clip_ms_median": med(list(self.clip_seconds))}
        if page:  # measured by the page itself: includes its decode queue and display refresh
            out.update(latency_page_ms_median=med(page), latency_page_ms_p95=p95(page), page_chunks=len(page))
        return out


def push_paced(push: Callable, wave: np.ndarray, chunk_seconds: float = 0.2, stop: threading.Event | None = None) -> bool:
    """Push 16 kHz ``wave`` in chunks at real-time pace, as a streaming TTS or a microphone would.

    Returns False if ``stop`` was set before the end.
    """
    n = int(RATE * chunk_seconds)
    t0 = time.perf_counter()
    for i, k in enumerate(range(0, wave.size, n)):
        if stop is not None and stop.is_set():
            return False
        push(wave[k:k + n], RATE)
        delay = t0 + (i + 1) * chunk_seconds - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return True


class LiveAvatar:
    """The live engine for one model and portrait.

    Args:
        pipe: the pipeline (model, device, dtype) to generate with.
        portrait: the prepared portrait.
        steps: consistency steps per denoised clip (1 by default; 2 adds a little detail).
        clip_frames: frames generated together; shorter clips mean lower latency.
        lead: seconds before a frame is due that its clip starts (its audio is all in then): a clip must
            be made within it; with ``adaptive_lead`` the least, grown to the time a clip really takes
            (see ``_adapt_lead``).
        user_hold: seconds the avatar keeps listening after the user's speech.
        motion_frames: previous frames each clip sees (1 halves the cost of 2-frame clips; the
            model is trained with 0 to ``config.motion_frames``).
        frozen: run the denoiser traced and frozen for the live clip shapes (``pipeline/frozen.py``),
            traced here before the clock starts; False runs it eagerly.
        on_frame: called with each :class:`LiveFrame` from the generator thread.
        output, max_size: frames of the portrait's own size ("full", long side capped at
            ``max_size``) or the model's crop ("crop"), as in the offline job.
        pause_unwatched: generate nothing while no viewer is connected (``viewer_joined`` /
            ``viewer_left``; the server counts its pages); the media clock runs on, so audio pushed
            meanwhile keeps its place and the first clip after a page connects is the clock's
            current one. False: generate for nobody (a host that consumes ``on_frame`` itself).
        motion: mouth amplitude, head motion and blinks (``MotionControls``); ``set_motion`` changes
            them while running.
        levels: the levels the engine may run at (``live/levels.py``: "full", "half", "quarter",
            "warp"), chosen clip by clip from measured times so that frames are late rarely instead of
            dropped often; ("full",) runs the denoiser on every clip whatever it costs. Models that do
            not warp the portrait's mouth run "full" only.
    """

    def __init__(self, pipe: LLIAPipeline, portrait: Portrait, *, steps: int = 1, clip_frames: int = 1,
                 lead: float = 0.03, user_hold: float = 0.6, seed: int = 0, motion_frames: int = 1,
                 frozen: bool = True, on_frame: Callable[[LiveFrame], None] | None = None,
                 output: str = "full", max_size: int | None = DEFAULT_MAX_SIZE, pause_unwatched: bool = False,
                 motion: MotionControls | None = None, adaptive_lead: bool = False, levels=LEVELS):
        self.pipe, self.portrait = pipe, portrait
        self.pause_unwatched = pause_unwatched
        self.viewers = 0
        self.paused = False
        cfg = pipe.config
        if cfg.audio.features != "log-mel":
            raise LLIAError(f"live mode reads log-mel audio features; this model reads {cfg.audio.features!r} "
                            "(a Whisper encoder needs 30-second chunks, far too slow per 80 ms clip): use a log-mel "
                            "model such as the bundled one for live mode")
        self.fps = float(cfg.fps)
        self._output = (output, max_size)
        # full steps: the traced fixed-shape denoiser (1.3x the eager one on these 3-frame calls) cannot keep
        # deep features, and with 2 steps it is as fast as the eager model reusing them
        self.sampler = SamplerConfig(steps=steps, seed=seed, first_clip=clip_frames, clip_frames=clip_frames,
                                     reuse_features=False, motion_frames=motion_frames)
        self.sampler.validate(cfg.max_clip_frames)
        self.set_motion(motion or MotionControls(seed=seed))
        self.clip_frames, self.lead, self.user_hold = clip_frames, lead, user_hold
        self.min_lead, self.adaptive_lead = lead, adaptive_lead
        a = cfg.audio
        self.lookahead = (a.context + 0.5) * a.token_seconds + 0.5 / self.fps
        if cfg.mouth_model is not None:  # the mouth model may listen further ahead than the audio tokens
            self.lookahead = max(self.lookahead, mouth_reach_seconds(cfg.mouth_model.future_seconds, self.fps))
        self._set_lead(lead)
        self._audio_used_until = 0.0  # media time up to which generated clips have read the avatar track
        self.on_frame = on_frame
        self.stats = LiveStats()
        self._lock = threading.Lock()
        self._track = np.zeros(0, np.float32)  # avatar voice, samples [track_offset, track_offset + len)
        self._track_offset = 0
        self._phones = None  # the mouth model's PhoneStream over the avatar's track, when it hears phones
        self._phones_fed = 0  # samples of the track fed to it
        self._user_until = -1.0  # media time until which the user counts as speaking
        self._user_pending: list[float] = []  # wall times of user-speech chunks not yet shown as listening
        self._user_inbox: list = []  # (wave, wall time, Future) waiting for the generator thread
        self._generator: int | None = None  # the generating thread's id while run() runs
        self._wake = threading.Event()
        self._chunks_waiting: deque = deque()  # avatar chunks whose first speaking frame is not out yet
        # ... out, but no page has reported showing it yet (bounded: a host may have no page at all)
        self._chunks_on_page: deque = deque(maxlen=2000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if frozen:  # its own pipeline (same model): the fast path must not change the caller's
            pipe = self.pipe = LLIAPipeline(pipe.model, pipe.device, pipe.dtype)
            pipe.freeze_fixed_shapes(2)  # the first clip (no motion frames) and every later one
        self.reference = pipe.prepare_reference(portrait)
        levels = levels_named(levels)
        if not (cfg.reference_warp and pipe.model.denoiser.draws_mouth):  # nothing to warp the portrait with
            levels = levels_named(["full"])
        self.governor = LevelGovernor(levels, clip_frames / self.fps)
        # the warped clips' reference: the portrait moved by the model's mouth warp, at the crop's size
        self._warper = self.renderer.compositor or Compositor(portrait, 256)
        self._residual: np.ndarray | None = None  # the last denoised frame minus its warped reference (0..255)
        self._warm_up()
        self.t0 = time.perf_counter()
        self.next_frame = 0
        self._motion = None
        self._last_state = IDLE

    MAX_LEAD = 0.5

    def _set_lead(self, lead: float) -> None:
        self.lead = lead
        # audio arriving after a clip started generating must play after every frame of that clip (a clip
        # starts no earlier than ``lead`` before its first frame; 2 ms for rounding to samples; and
        # ``push_avatar_audio`` never places audio where a clip already read)
        self.audio_delay = lead + self.lookahead + (self.clip_frames - 1) / self.fps + 0.002

    def _adapt_lead(self) -> None:
        """Keep the lead at the time a clip really takes (90th percentile of the last 40, + 5 ms).

        A clip is started ``lead`` before its first frame is due; if it takes longer, its frames
        reach the page late and are shown behind their sound. The voice is then scheduled that much
        later instead (``audio_delay`` follows), which keeps the face in sync with the voice but costs
        latency. Before the levels (2-frame denoised clips, 98-123 ms against an 80 ms lead): lead 146
        ms, 370 ms voice -> face vs 357 ms fixed. With warped 1-frame clips (2 minutes, lead from 15 ms):
        it settled at 21.5 ms, 186 / 199 ms (engine / page), 1.2% of frames late; the fixed 30 ms lead
        is the default (0.1-0.2% late).
        """
        if not self.adaptive_lead:
            return
        recent = list(itertools.islice(reversed(self.stats.clip_seconds), 40))  # not a copy of all 20,000
        if len(recent) >= 5:
            want = float(np.percentile(recent, 90)) + 0.005
            self._set_lead(min(self.MAX_LEAD, max(self.min_lead, want)))

    def set_motion(self, motion: MotionControls) -> None:
        """New mouth amplitude, head motion and blinks, from the next clip on (the head motion goes on
        from where it is when only its amount changes, and the blinks keep the video's clock, so nothing
        jumps but what was changed)."""
        motion.validate()
        output, max_size = self._output
        renderer = FrameRenderer(self.portrait, output, max_size, motion, self.fps,
                                 head_model=self.pipe.model.head_model,
                                 painter=self.pipe.model.mouth_painter)
        old = getattr(self, "renderer", None)
        if old is not None and old.motion is not None and renderer.motion is not None:
            renderer.motion.continue_from(old.motion)
        self.motion, self.renderer = motion, renderer
        self.sampler = dataclasses.replace(self.sampler, mouth_amplitude=motion.mouth_amplitude)

    # clock
    def now(self) -> float:
        return time.perf_counter() - self.t0

    # inputs
    def to_16k(self, pcm, sample_rate: int) -> np.ndarray:
        """A chunk as 16 kHz mono float32 in [-1, 1]; clear errors for empty or non-finite audio."""
        wave = np.asarray(pcm, np.float32).reshape(-1)
        if wave.size == 0:
            raise AudioError("the audio chunk is empty; send at least one sample")
        if not np.isfinite(wave).all():
            raise AudioError("the audio chunk contains NaN or infinite samples; send PCM in [-1, 1]")
        if int(sample_rate) != RATE:
            wave = resample(torch.from_numpy(wave), int(sample_rate), RATE).numpy()
        return np.clip(wave, -1, 1)

    def push_avatar_audio(self, pcm, sample_rate: int = RATE) -> ChunkEvent:
        """Queue the avatar's voice; returns where it plays on the media clock."""
        wave = self.to_16k(pcm, sample_rate)
        with self._lock:
            received = self.now()
            end = (self._track_offset + self._track.size) / RATE
            # never into audio that clips already generated have read (the lead may have shrunk)
            start = max(received + self.audio_delay, end, self._audio_used_until + 0.001)
            gap = int(round(start * RATE)) - (self._track_offset + self._track.size)
            self._track = np.concatenate([self._track, np.zeros(max(gap, 0), np.float32), wave])
            event = ChunkEvent(time.perf_counter(), start, wave.size / RATE)
            self.stats.chunks.append(event)
            self._chunks_waiting.append(event)
        return event

    def push_user_audio(self, pcm, sample_rate: int = RATE) -> bool:
        """The user's microphone; returns whether it held speech (the avatar then listens).

        While the generator runs, the speech check runs on its thread (between clips): PyTorch work
        from a second thread makes OpenMP start a second thread team, more threads than cores, and
        libgomp then stops spinning between parallel regions, which doubled the clip time (measured:
        61 -> 122 ms per clip with user audio pushed every 200 ms).
        """
        wave, received = self.to_16k(pcm, sample_rate), time.perf_counter()
        if self._generator in (None, threading.get_ident()):
            return self._user_speech(wave, received)
        answer: Future = Future()
        with self._lock:
            self._user_inbox.append((wave, received, answer))
        self._wake.set()
        try:
            return answer.result(timeout=2.0)
        except FutureTimeout:  # the generator stopped meanwhile
            return self._user_speech(wave, received)

    def _user_speech(self, wave: np.ndarray, received: float) -> bool:
        n = max(1, int(round(wave.size / RATE * self.fps)))
        speech = bool(detect_speech(torch.from_numpy(wave), n, self.fps, threshold_db=-42.0).any())
        if speech:
            with self._lock:
                self._user_until = max(self._user_until, received - self.t0 + self.user_hold)
                self._user_pending.append(received)
        return speech

    def _answer_user_audio(self) -> None:
        """Generator thread: check the user's queued chunks for speech."""
        with self._lock:
            inbox, self._user_inbox = self._user_inbox, []
        for wave, received, answer in inbox:
            if not answer.done():
                try:
                    answer.set_result(self._user_speech(wave, received))
                except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
                    answer.set_exception(exc)

    # generation
    def _avatar_excerpt(self, first: int, last: int) -> np.ndarray:
        """Avatar-track samples for frames [first, last) (zeros where nothing plays)."""
        return self._avatar_samples(int(round(first / self.fps * RATE)), int(round(last / self.fps * RATE)))

    def _avatar_samples(self, a: int, b: int) -> np.ndarray:
        """Avatar-track samples [a, b) (zeros where nothing plays)."""
        out = np.zeros(b - a, np.float32)
        with self._lock:
            lo, hi = max(a, self._track_offset), min(b, self._track_offset + self._track.size)
            if hi > lo:
                out[lo - a:hi - a] = self._track[lo - self._track_offset:hi - self._track_offset]
            keep_from = a - 5 * RATE  # keep a few seconds back for the audio context; memory stays flat
            if keep_from > self._track_offset:
                cut = min(keep_from - self._track_offset, self._track.size)
                self._track = self._track[cut:]
                self._track_offset += cut
        return out

    def _clip_inputs(self, start: int, length: int, motion_len: int):
        """The clip's audio windows, mouth windows (None without a mouth model) and speech, from an excerpt
        of the avatar's track long enough that every frame's windows read the same audio as offline."""
        cfg = self.pipe.config
        mouth_cfg = cfg.mouth_model
        pad = cfg.audio.context + 2
        back = pad if mouth_cfg is None else max(pad, math.ceil(mouth_cfg.past_seconds * self.fps) + 2)
        ahead = pad if mouth_cfg is None else max(pad, math.ceil(mouth_cfg.future_seconds * self.fps) + 2)
        first = start - motion_len - back
        wave = self._avatar_excerpt(first, start + length + ahead)
        n = length + motion_len + back + ahead
        mel = log_mel(torch.from_numpy(wave), cfg.audio.n_mels)
        windows = frame_windows(mel, n, self.fps, cfg.audio.context, cfg.audio.mel_per_token, cfg.audio.token_seconds)
        t = torch.from_numpy(wave)
        speech = detect_speech(t, n, self.fps, threshold_db=-42.0) | (frame_rms(t, n, self.fps) > 0.02)
        sl = slice(back, back + motion_len + length)
        mouth = None
        if mouth_cfg is not None:
            mel_m = mel if mouth_cfg.n_mels == cfg.audio.n_mels else log_mel(t, mouth_cfg.n_mels)
            phones = self._phones_of(first, start + length + ahead, mel_m.shape[0]) if mouth_cfg.phones else None
            mouth = mouth_windows(mel_m, n, self.fps, mouth_cfg.past_frames, mouth_cfg.future_frames, phones)[sl]
        return windows[sl], mouth, speech[sl]

    def _phones_of(self, first: int, last: int, rows: int) -> torch.Tensor:
        """(rows, classes) one-hot phones of the log-mel frames of the excerpt from video frame ``first``, from a
        ``PhoneStream`` that hears the avatar's track from its start, in order, up to frame ``last`` (as an
        offline run of the same track hears it); labels not fixed yet are zeros (the model masks them)."""
        from ..audio.phones import PhoneStream, one_hot

        if self._phones is None:
            self._phones = PhoneStream(self.pipe.config.mouth_model.phone_lag)
        end = int(round(last / self.fps * RATE))
        if end > self._phones_fed:
            self._phones.feed(self._avatar_samples(self._phones_fed, end))
            self._phones_fed = end
        k0 = int(round(first / self.fps * 100))
        labels = self._phones.span(k0, k0 + rows)
        self._phones.forget(k0 - 500)  # clips only look back (5 s kept): memory stays flat over hours
        return one_hot(labels, rows)

    def _hear_head(self, until: int) -> None:
        """The head motion hears the avatar's track up to frame ``until`` (every frame once, in order,
        skipped frames too: live draws the same head motion as offline for the same track)."""
        renderer = self.renderer
        stream = None if renderer.motion is None else renderer.motion.stream
        if stream is None:
            return
        heard = int(round(stream.samples_heard / RATE * self.fps))
        if until > heard:
            renderer.hear(self._avatar_excerpt(heard, until))

    def _states(self, speech: torch.Tensor, pts: np.ndarray) -> torch.Tensor:
        with self._lock:
            user_until = self._user_until
        states = torch.full((speech.numel(),), IDLE, dtype=torch.long)
        states[torch.from_numpy(pts <= user_until)] = LISTENING
        states[speech] = SPEAKING  # the avatar's own voice wins
        return states

    def _generate(self, start: int, length: int, windows, mouth, speech, states, motion, denoise: bool = True):
        """Frames (uint8) of one clip (video frames ``start``...) and the next clip's motion frames.

        ``denoise``: the diffusion model makes the clip; otherwise it is *warped*: the mouth model's
        shapes move the portrait and the residual of the last denoised frame is held on top
        (``live/levels.py`` says when and why)."""
        m = 0 if motion is None else motion.shape[2]
        audio = AudioFeatures(Audio(torch.zeros(1)), self.fps, m + length, windows, speech, torch.zeros(m + length),
                              mouth)
        clip = ClipPlan(index=start, start=m, length=length, state=int(states[-1]))
        pipe = self.pipe
        if motion is None:
            c, h = pipe.config.autoencoder.latent_channels, pipe.config.latent_size
            motion = torch.zeros((1, c, 0, h, h), device=pipe.device)
        sampler = dataclasses.replace(self.sampler, seed=self.sampler.seed * 1_000_003 + start)  # fresh noise per clip
        renderer = self.renderer  # set_motion may replace it meanwhile
        job = pipe.new_job(clip, audio, states, motion, sampler)  # runs the mouth model
        shapes = pipe.clip_mouth(job)
        if denoise:
            pipe.advance(job, self.reference, sampler)
            crops = pipe.decode_clip(job.latents)
            if shapes is not None:
                self._residual = crops[-1].numpy() * 255 - self._warper.reference_for(shapes[-1].numpy())
            after = pipe.motion_after(job.latents, sampler.motion_frames)
        else:
            crops = self._warped_crops(shapes)
            after = self._motion_from(crops, sampler.motion_frames)
        images = renderer(crops, shapes, start)  # the portrait's own size (or the crop)
        return images, after

    @contextmanager
    def _threads_for(self, denoise: bool):
        """A warped clip's small operations run on one thread: measured on 2 cores with the page open,
        15.1 vs 17.9 ms a clip and 0.2% vs 9.7% of frames late (a 2-thread team stalls whenever the
        browser takes one of its cores); a denoised clip keeps the caller's threads."""
        if denoise:
            yield
            return
        before = torch.get_num_threads()
        use_threads(1)
        try:
            yield
        finally:
            restore_threads(before)

    def _warped_crops(self, shapes: torch.Tensor) -> torch.Tensor:
        """(L, R, R, 3) float 0..1: the reference moved to each mouth shape, plus the held residual."""
        crops = np.stack([self._warper.reference_for(s) for s in shapes.numpy()])
        if self._residual is not None:
            crops += self._residual
        return torch.from_numpy(np.clip(crops, 0, 255) / 255).float()

    def _motion_from(self, crops: torch.Tensor, count: int) -> torch.Tensor:
        """The next clip's motion frames from warped crops (the autoencoder's latents of the last ones),
        so a denoised clip after warped ones continues from what was shown."""
        pipe = self.pipe
        m = pipe.motion_count(count)
        pixels = crops[len(crops) - m:].permute(0, 3, 1, 2).to(pipe.device, pipe.dtype)
        return pipe.model.encode_pixels(pixels).permute(1, 0, 2, 3)[None]

    @torch.no_grad()
    def _warm_up(self) -> None:
        """Run each kind of clip twice on silence (tracing the denoised one, if frozen) so the first real
        clips are on time; the second run of each is the level governor's first measurement."""
        motion = None
        warps = any(level.denoise_every != 1 for level in self.governor.levels)
        kinds = (True, True, False, False) if warps else (True, True)
        if all(level.denoise_every == 0 for level in self.governor.levels):
            kinds = (True, False, False)  # one denoised clip: the residual the warped ones hold
        for run, denoise in enumerate(kinds):
            t = time.perf_counter()
            m = 0 if motion is None else motion.shape[2]
            with self._threads_for(denoise):
                windows, mouth, speech = self._clip_inputs(0, self.clip_frames, m)
                states = torch.full((m + self.clip_frames,), IDLE, dtype=torch.long)
                _, motion = self._generate(0, self.clip_frames, windows, mouth, speech, states, motion, denoise)
            if run and kinds[run - 1] == denoise:  # the second of its kind (the first traces)
                self.governor.record(denoise, time.perf_counter() - t, False, self.lead, 0.0, 0)
        self.governor.counter = 0

    def newest_complete_frame(self) -> int:
        """The latest frame whose clip can start now: its audio (``lead`` ahead of the clock) is all in.

        A machine that falls behind resumes here, not at the clock: frames at the clock would be
        ready a clip's time after they were due and shown that late, behind their audio (measured
        on 2 cores: 98 ms clips, frames shown ~100 ms late, 373 ms voice -> face); these are
        ready ``clip time - lead`` after due at worst, so the picture stays with the sound.
        """
        return int(math.floor((self.now() + self.lead) * self.fps - 0.5))

    def step(self) -> list[LiveFrame]:
        """Generate the next clip now (the thread calls this on schedule; tests may call it directly)."""
        t_start = time.perf_counter()
        now = self.now()
        # the next frame is already due (too slow): skip ahead instead of piling up delay; frames not yet
        # due are made, however little ahead of the clock (at the start, or after a slow clip)
        behind = self.newest_complete_frame() - self.next_frame if (self.next_frame + 0.5) / self.fps < now else 0
        if behind > 0:
            self.stats.dropped += behind
            self.stats.drops.append((self.next_frame / self.fps, behind))
            self.next_frame += behind
        start, length = self.next_frame, self.clip_frames
        motion = self._motion
        m = 0 if motion is None else motion.shape[2]  # None only before the first clip
        denoise = self.governor.denoise_next()
        with self._threads_for(denoise):
            windows, mouth, speech = self._clip_inputs(start, length, m)
            pts_all = (np.arange(start - m, start + length) + 0.5) / self.fps
            states = self._states(speech, pts_all)
            head = self.pipe.model.head_model
            if head is not None:  # the head's pose between two steps needs the next step's audio (3 frames ahead)
                self._hear_head(start + length + head.config.frames_per_step - 1)
            self.renderer.follow_states(start, states[m:].numpy())  # nods while the user speaks
            with self._lock:
                self._audio_used_until = max(self._audio_used_until, pts_all[-1] + self.lookahead)
            images, self._motion = self._generate(start, length, windows, mouth, speech, states, motion, denoise)
        ready = time.perf_counter()
        self.stats.clip_seconds.append(ready - t_start)
        now = self.now()  # the engine's clock (tests may replace it)
        self.governor.record(denoise, ready - t_start, now > (start + 0.5) / self.fps, self.lead, now, length)
        self._adapt_lead()
        self.stats.frames += length  # counted before any is handed out: a viewer never sees uncounted frames
        frames = []
        for i in range(length):
            idx = start + i
            frame = LiveFrame(idx, (idx + 0.5) / self.fps, int(states[m + i]), images[i], ready)
            frames.append(frame)
            self._account(frame)
            if self.on_frame is not None:
                self.on_frame(frame)
        self.next_frame = start + length
        return frames

    def _account(self, frame: LiveFrame) -> None:
        due = self.t0 + frame.pts  # when the browser shows it, in sync with the audio clock
        shown = max(frame.ready, due)
        self.stats.lag.append((frame.pts, frame.ready - due))
        with self._lock:
            waiting = self._chunks_waiting
            while waiting and waiting[0].start + waiting[0].duration <= frame.pts:
                waiting.popleft()  # its frames are past (skipped, or silent in the voice): no first frame
            if waiting and waiting[0].start <= frame.pts and frame.state == SPEAKING:
                ev = waiting.popleft()
                ev.first_frame_ready, ev.first_frame_shown, ev.first_frame_index = frame.ready, shown, frame.index
                self._chunks_on_page.append(ev)
        if frame.state == LISTENING and self._last_state != LISTENING:
            with self._lock:
                pending, self._user_pending = self._user_pending, []
            if pending:
                self.stats.switches.append((pending[0], shown))
        elif frame.state != LISTENING:
            with self._lock:
                self._user_pending = [w for w in self._user_pending if time.perf_counter() - w < 2.0]
        self._last_state = frame.state

    def page_showed(self, index: int, lag_ms: float) -> None:
        """A page showed frame ``index`` ``lag_ms`` after its media time: the first such frame of a
        voice chunk (its first speaking frame, or a later one if the page skipped that) dates when
        the chunk's face was really shown."""
        pts = (index + 0.5) / self.fps
        with self._lock:
            waiting = self._chunks_on_page
            while waiting and waiting[0].first_frame_index <= index:
                ev = waiting.popleft()
                if pts < ev.start + ev.duration:
                    ev.page_shown = self.t0 + pts + max(0.0, float(lag_ms)) / 1000.0

    def viewer_joined(self) -> None:
        with self._lock:
            self.viewers += 1
        self._wake.set()

    def viewer_left(self) -> None:
        with self._lock:
            self.viewers = max(0, self.viewers - 1)

    def _resume(self) -> None:
        """Back from a pause: the clock ran on; its frames were never due to anyone (not drops)."""
        passed = int(math.floor(self.now() * self.fps)) - self.next_frame
        if passed > 0:
            self.stats.paused_frames += passed
            self.next_frame += passed
        self.paused = False

    def _run(self) -> None:
        while not self._stop.is_set():
            self._answer_user_audio()
            if self.pause_unwatched and self.viewers == 0:
                self.paused = True
                self._wake.wait(0.1)  # asleep: a page connecting wakes it at once
                self._wake.clear()
                continue
            if self.paused:
                self._resume()
            due = (self.next_frame + 0.5) / self.fps - self.lead
            wait = due - self.now()
            if wait > 0:
                self._wake.wait(min(wait, 0.05))
                self._wake.clear()
                continue
            self.step()

    def run(self, threads: int | None = None) -> None:
        """Generate in the calling thread until :meth:`stop`. PyTorch runs this model ~1.5x faster
        in the main thread than in a new one (measured: 63 vs 100 ms per clip; probably the two
        OpenMP teams described in :meth:`push_user_audio`), so the CLI calls this."""
        if threads:
            torch.set_num_threads(threads)
        self._generator = threading.get_ident()
        try:
            with torch.no_grad():
                self._run()
        finally:
            self._generator = None
            self._answer_user_audio()

    def start(self, threads: int | None = None) -> "LiveAvatar":
        """Generate on a background thread (for hosts like ComfyUI whose main thread is busy)."""
        self._thread = threading.Thread(target=self.run, args=(threads,), name="llia-live", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @staticmethod
    def state_name(state: int) -> str:
        return STATE_NAMES[state]
