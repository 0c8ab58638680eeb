"""LLIAPipeline: portrait + audio + states -> frames, clip by clip.

``stream()`` yields each clip as soon as it is decoded; ``generate()`` collects the same stream,
so both give identical frames for the same seed and clip plan. Per clip:

    noise (seeded by the clip's place) + motion frames (last latents of the previous clip)
      -> consistency / teacher sampler -> latents -> decode -> frames
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from ..audio import AudioFeatures
from ..clips import ClipPlan, clip_noise_seed, plan_clips
from ..errors import LLIAError
from ..models import LLIAModel, ReferenceState
from ..models.denoiser import ClipConditioning
from ..models.feature_reuse import DeepFeatures
from ..models.mouth_warp import scale_mouth
from ..portrait import Portrait
from ..sampling import ConsistencyRun, consistency_scheduler, sample_teacher, teacher_scheduler
from ..states import states_from_activity
from .drift_guard import DEFAULT_TOLERANCE, anchor_motion
from .frozen import FrozenDenoiser

SAMPLERS = ("consistency", "ddim", "euler")


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample.

    Args:
        sampler: "consistency" (1-8 steps, the distilled student) or "ddim"/"euler" (teacher).
        steps: denoising steps per clip.
        guidance_scale: classifier-free guidance on audio (1 = off, one model call per step).
        reference_guidance: classifier-free guidance on the reference (1 = off).
        seed: noise seed; the same seed and clip plan give the same frames.
        first_clip: frames of the first clip (and, with ``restart_on_switch``, of the first clip
            after each state switch).
        clip_frames: longest clip (capped at the model's trained maximum).
        growth: factor by which clip lengths grow after the first.
        restart_on_switch: cut clips at every state switch and start short again after it. That
            lowers a switch's latency only where states arrive while generating (live mode, whose
            clips are short anyway); offline, where the whole timeline is known, short clips only
            cost throughput (18.6 vs 24.3 FPS end to end at 512 px on the bundled speech), so by
            default clips run across switches: every frame carries its own state label, and the
            motion module carries the face through the switch inside the clip.
        motion_step: consistency sampling only: take the next clip's motion frames from the clean
            estimate after this many steps (0 = after the last step). With ``motion_step`` < steps
            the next clip can start while the current one finishes, which is what lets pipeline
            stages overlap (``PipelinedLLIA``); the frames do not depend on whether they did.
        drift_guard: long runs: motion frames whose per-channel colour or contrast strays more than
            this far from the portrait's are pulled back (``drift_guard.py``; 0 = off).
        mouth_amplitude: how far the mouth moves from the portrait's own: 0 still, 1 as trained, 2
            exaggerated (scales the audio's mouth shapes the model and the paste-back draw;
            ``mouth_warp.scale_mouth``). Models that draw no mouth ignore it.
        motion_frames: how many of a clip's last frames the next clip sees as motion frames (capped
            at the model's ``motion_frames``, the most it was trained with; it is trained with 0 up to
            that many). 1 makes every 16-frame clip a 17-frame denoiser call instead of 18: 5-6%
            more frames per second end to end, with the real-face and cartoon measures unchanged
            (docs/benchmarks.md); 2 carries a little more motion across clip boundaries.
        reuse_features: consistency sampling with 2+ steps: later steps reuse the first step's deep
            UNet features and recompute only the top level (``models/feature_reuse.py``): 1.4-1.5x
            the speed, frames within about 64 dB PSNR of full steps. False recomputes every step.
    """

    sampler: str = "consistency"
    steps: int = 2
    guidance_scale: float = 1.0
    reference_guidance: float = 1.0
    seed: int = 0
    first_clip: int = 2
    clip_frames: int = 16
    growth: float = 2.0
    restart_on_switch: bool = False
    motion_step: int = 0
    drift_guard: float = DEFAULT_TOLERANCE
    mouth_amplitude: float = 1.0
    motion_frames: int = 1
    reuse_features: bool = True

    def validate(self, max_clip: int) -> None:
        if self.sampler not in SAMPLERS:
            raise LLIAError(f"unknown sampler '{self.sampler}'; use one of {', '.join(SAMPLERS)}")
        limit = 8 if self.sampler == "consistency" else 200
        if not 1 <= self.steps <= limit:
            raise LLIAError(f"{self.sampler} sampling takes 1 to {limit} steps, not {self.steps}")
        if not 1 <= self.first_clip <= max_clip or not 1 <= self.clip_frames:
            raise LLIAError(f"clip lengths must be between 1 and {max_clip} frames for this model")
        if self.guidance_scale < 0 or self.reference_guidance < 0:
            raise LLIAError("guidance scales must be >= 0")
        if not 0 <= self.drift_guard <= 10:
            raise LLIAError(f"drift_guard must be between 0 (off) and 10, not {self.drift_guard}")
        if not 0 <= self.mouth_amplitude <= 2:
            raise LLIAError(f"mouth_amplitude must be between 0 (still) and 2 (exaggerated), not {self.mouth_amplitude}")
        if not 0 <= self.motion_frames <= max_clip:
            raise LLIAError(f"motion_frames must be between 0 and {max_clip}, not {self.motion_frames}")
        if not 0 <= self.motion_step <= self.steps or (self.motion_step and self.sampler != "consistency"):
            raise LLIAError(f"motion_step must be between 0 and steps ({self.steps}), and only the consistency "
                            "sampler can hand motion frames over early")

    @property
    def reuses_features(self) -> bool:
        """Whether later steps of a clip reuse its first step's deep features (``reuse_features``
        applies only to consistency sampling with 2+ steps)."""
        return self.sampler == "consistency" and self.steps > 1 and self.reuse_features

    @property
    def motion_split(self) -> int:
        """Steps after which the next clip's motion frames exist."""
        return self.motion_step or self.steps


@dataclass
class ClipJob:
    """One clip in flight: its conditioning, starting noise and sampler state (movable between stages)."""

    clip: ClipPlan
    windows: torch.Tensor  # (1, M + L, T, D)
    states: torch.Tensor  # (1, M + L)
    motion: torch.Tensor  # (1, C, M, h, w)
    noise: torch.Tensor  # (1, C, L, h, w)
    run: ConsistencyRun | None  # None for the teacher samplers
    result: torch.Tensor | None = None
    mouth: torch.Tensor | None = None  # (1, M + L, 3) the mouth shapes drawn, for models with a mouth head
    deep: DeepFeatures | None = None  # the first step's deep features, reused by the later ones
    conditioning: ClipConditioning | None = None  # what every step's denoiser call shares (filled by the first)

    @property
    def latents(self) -> torch.Tensor:
        """Clean latents so far (the consistency estimate after the steps run, or the teacher's result)."""
        return self.run.denoised if self.run is not None else self.result

    def to(self, device) -> "ClipJob":
        if self.windows.device == torch.device(device):
            return self
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        run = self.run
        if run is not None:
            run = ConsistencyRun(run.scheduler, move(run.x), run.steps, run.seed, run.done, move(run.denoised))
        return ClipJob(self.clip, move(self.windows), move(self.states), move(self.motion), move(self.noise),
                       run, move(self.result), move(self.mouth), None if self.deep is None else self.deep.to(device),
                       None if self.conditioning is None else self.conditioning.to(device))


@dataclass
class ClipOutput:
    """One decoded clip. frames: (F, R, R, 3) float32 0..1 on the CPU."""

    clip: ClipPlan
    frames: torch.Tensor
    latents: torch.Tensor
    elapsed: float  # seconds from the start of the stream to this clip being ready
    mouth: torch.Tensor | None = None  # (F, 3) the mouth shapes a warp model moved the portrait to


@dataclass
class GenerationOutput:
    """All frames of a run. frames: (N, R, R, 3) float32 0..1; audio: (N / fps * 16000,)."""

    frames: torch.Tensor
    audio: torch.Tensor
    sample_rate: int
    fps: float
    states: torch.Tensor
    clips: list[ClipPlan]
    timings: dict = field(default_factory=dict)


class LLIAPipeline:
    """Runs an :class:`LLIAModel` on one device and dtype; caches reference features."""

    def __init__(self, model: LLIAModel, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None):
        self.model = model
        self.device = torch.device(device) if device is not None else model.device
        self.dtype = dtype or next(model.parameters()).dtype
        self._reference_cache: dict[tuple, ReferenceState] = {}
        self.frozen_limit = 0
        self._frozen: list[FrozenDenoiser] = []

    def freeze_fixed_shapes(self, limit: int = 2) -> None:
        """Trace and freeze the denoiser for the first ``limit`` clip shapes it runs (``frozen.py``).

        For callers that repeat one clip shape with one portrait, like the live engine; every other
        shape, and guidance, keeps running the eager model, as does an int8 model (its activation
        scales are measured per call; a trace would fix them).
        """
        from ..quantization import is_int8

        self.frozen_limit = 0 if is_int8(self.model.denoiser) else int(limit)

    def _frozen_for(self, reference: ReferenceState, sample, t, windows, states, flags,
                    mouth=None) -> FrozenDenoiser | None:
        for frozen in self._frozen:
            if frozen.serves(reference, sample, windows, states, flags, mouth):
                return frozen
        self._frozen = [f for f in self._frozen if f.reference is reference]  # a new portrait
        if len(self._frozen) >= self.frozen_limit:
            return None
        self._frozen.append(FrozenDenoiser(self.model.denoiser, reference, self.dtype, sample, t, windows, states,
                                           flags, mouth))
        return self._frozen[-1]

    @property
    def config(self):
        return self.model.config

    # 1. Reference: once per portrait
    @torch.no_grad()
    def prepare_reference(self, portrait: Portrait) -> ReferenceState:
        """Encode the portrait and run the ReferenceNet; cached by image content."""
        r = self.config.resolution
        image = portrait.image
        if tuple(image.shape) != (3, r, r):
            raise LLIAError(f"the portrait is {tuple(image.shape)} but this model needs (3, {r}, {r}); "
                            f"prepare it with resolution={r}")
        view, own = portrait.view, self.config.framing
        if view.centre_y != own.centre_y or (self.config.reference_warp and view != own):
            raise LLIAError(f"the portrait was cropped to show {view} but this model works on {own}; prepare it "
                            "with view=model.config.framing (prepare_portrait(..., view=...))")
        anchor = portrait.mouth_anchor
        key = (hash(image.numpy().tobytes()), hash(portrait.face_mask.numpy().tobytes()),
               None if anchor is None else tuple(anchor.tolist()))
        if key not in self._reference_cache:
            image = image[None].to(self.device, self.dtype)
            mask = portrait.face_mask[None].to(self.device, self.dtype)
            self._reference_cache.clear()  # one portrait at a time keeps memory flat
            self._reference_cache[key] = self.model.encode_reference(
                image, mask, None if anchor is None else anchor[None].to(self.device))
        return self._reference_cache[key]

    # 2. Clip plan
    def plan(self, num_frames: int, states: torch.Tensor, sampler: SamplerConfig) -> list[ClipPlan]:
        max_clip = min(sampler.clip_frames, self.config.max_clip_frames)
        return plan_clips(num_frames, states, first_clip=min(sampler.first_clip, max_clip), max_clip=max_clip,
                          growth=sampler.growth, cut_at_switches=sampler.restart_on_switch)

    # 3. Denoise one clip
    def _model_fn(self, reference: ReferenceState, windows, states, motion, guidance: SamplerConfig, mouth=None,
                  deep: DeepFeatures | None = None, conditioning: ClipConditioning | None = None):
        """Close the conditioning of one clip over ``model_fn(x, t)`` with guidance; ``mouth``: (1, F, 3)
        or None (the denoiser's own); ``deep``: the clip's kept deep features, which only the eager
        denoiser can keep and reuse: such clips never take the frozen fixed-shape path; ``conditioning``:
        what the clip's denoiser calls share, filled by the first (``ClipConditioning``)."""
        m, f = motion.shape[2], windows.shape[1]
        flags = torch.zeros(1, f, device=self.device)
        flags[:, :m] = 1
        use_ref_cfg = guidance.reference_guidance != 1.0
        use_audio_cfg = guidance.guidance_scale != 1.0
        # rows: full conditioning, [no audio], [no audio and no reference]
        audio_keep = [True] + ([False] if use_audio_cfg or use_ref_cfg else []) + ([False] if use_ref_cfg else [])
        ref_keep = [True] + ([True] if use_audio_cfg or use_ref_cfg else []) + ([False] if use_ref_cfg else [])
        n = len(audio_keep)
        a_keep = torch.tensor(audio_keep, device=self.device)[:, None].expand(n, f)
        r_keep = torch.tensor(ref_keep, device=self.device)[:, None].expand(n, f)
        bank = {k: v.expand(n, -1, -1) for k, v in reference.bank.items()}
        ref_latent = reference.latent.expand(n, -1, -1, -1)
        mask = reference.face_mask.expand(n, -1, -1, -1)
        anchor = None if reference.mouth_anchor is None else reference.mouth_anchor.expand(n, -1)
        windows_n = windows.expand(n, -1, -1, -1)
        states_n = states.expand(n, -1)
        flags_n = flags.expand(n, -1)
        mouth_n = None if mouth is None else mouth.expand(n, -1, -1)
        motion = anchor_motion(motion, reference.latent, guidance.drift_guard).to(self.dtype)

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            sample = torch.cat([motion, x.to(self.dtype)], dim=2).expand(n, -1, -1, -1, -1)
            frozen = None
            if n == 1 and self.frozen_limit and deep is None:
                frozen = self._frozen_for(reference, sample, t.reshape(1), windows_n, states_n, flags_n, mouth_n)
            if frozen is not None:
                return frozen(sample, t, windows_n, states_n, flags_n, mouth_n)[:, :, m:].float()
            out = self.model.denoiser(
                sample, t.reshape(1).expand(n), windows_n, states_n, ref_latent, bank, mask, flags_n,
                audio_keep=a_keep if n > 1 else None, reference_keep=r_keep if n > 1 else None,
                mouth_anchor=anchor, mouth=mouth_n, deep=deep, conditioning=conditioning,
            )[:, :, m:].float()
            if n == 1:
                return out
            full, no_audio = out[0:1], out[1:2]
            if use_ref_cfg:
                none = out[2:3]
                return none + guidance.reference_guidance * (no_audio - none) \
                    + guidance.guidance_scale * (full - no_audio)
            return no_audio + guidance.guidance_scale * (full - no_audio)

        return model_fn

    def new_job(self, clip: ClipPlan, audio: AudioFeatures, states: torch.Tensor, motion: torch.Tensor,
                sampler: SamplerConfig) -> "ClipJob":
        """The conditioning and starting noise of one clip; ``motion``: (1, C, M, h, w)."""
        m = motion.shape[2]
        idx = torch.arange(clip.start - m, clip.stop)
        c, h = self.config.autoencoder.latent_channels, self.config.latent_size
        seed = clip_noise_seed(sampler.seed, clip)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn((1, c, clip.length, h, h), generator=generator).to(self.device)
        run = None
        if sampler.sampler == "consistency":
            run = ConsistencyRun(consistency_scheduler(self.config), noise, sampler.steps, seed)
        windows, clip_states = audio.windows[idx][None].to(self.device, self.dtype), states[idx][None].to(self.device)
        mouth = None
        if self.model.denoiser.draws_mouth:  # once per clip: the denoiser, the frozen path and the renderer agree
            with torch.no_grad():
                mouth = self.model.mouth_shapes(audio, idx.clamp(min=0), clip_states[0], windows[0])
            mouth = scale_mouth(mouth, sampler.mouth_amplitude)[None]
        deep = DeepFeatures() if sampler.reuses_features else None
        return ClipJob(clip, windows, clip_states, motion.to(self.device), noise, run, mouth=mouth, deep=deep,
                       conditioning=ClipConditioning())

    @torch.no_grad()
    def advance(self, job: "ClipJob", reference: ReferenceState, sampler: SamplerConfig, stop: int | None = None,
                step_callback: Callable | None = None) -> "ClipJob":
        """Run the job's denoising steps up to ``stop`` (all by default) on this pipeline's device."""
        job = job.to(self.device)
        model_fn = self._model_fn(reference, job.windows, job.states, job.motion, sampler, job.mouth, job.deep,
                                  job.conditioning)
        if job.run is not None:
            job.run.advance(model_fn, stop, callback=step_callback)
        elif job.result is None:
            job.result = sample_teacher(model_fn, job.noise, teacher_scheduler(self.config, sampler.sampler),
                                        sampler.steps, callback=step_callback)
        return job

    def denoise_clip(self, clip: ClipPlan, reference: ReferenceState, audio: AudioFeatures,
                     states: torch.Tensor, motion: torch.Tensor, sampler: SamplerConfig,
                     step_callback: Callable | None = None) -> torch.Tensor:
        """Latents (1, C, L, h, w) of one clip; ``motion``: (1, C, M, h, w) previous latents."""
        job = self.new_job(clip, audio, states, motion, sampler)
        return self.advance(job, reference, sampler, step_callback=step_callback).latents

    @torch.no_grad()
    def clip_mouth(self, job: "ClipJob") -> torch.Tensor | None:
        """(L, 3) the mouth shapes of the job's new frames, for models that warp the portrait (the
        renderer moves the full-resolution picture the same way); None for the others."""
        if not self.config.reference_warp or job.mouth is None:
            return None
        return job.mouth[0, -job.clip.length:].float().cpu()

    def motion_count(self, requested: int | None = None) -> int:
        """How many motion frames a clip hands the next: ``requested`` (e.g. ``SamplerConfig.motion_frames``;
        default: the model's ``motion_frames``), at most the model's, the most it was trained with."""
        return self.config.motion_frames if requested is None else min(requested, self.config.motion_frames)

    def motion_after(self, latents: torch.Tensor, count: int | None = None) -> torch.Tensor:
        """The motion frames the next clip sees: the last :meth:`motion_count` latents."""
        m = self.motion_count(count)
        return latents[:, :, latents.shape[2] - m:] if m else latents[:, :, :0]

    # 4. Decode
    @torch.no_grad()
    def decode_clip(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (1, C, L, h, w) -> frames (L, R, R, 3) float32 on the CPU."""
        flat = latents[0].permute(1, 0, 2, 3).to(self.dtype)
        return self.model.decode_latents(flat).float().cpu()

    def resolve_states(self, audio: AudioFeatures, states: torch.Tensor | None) -> torch.Tensor:
        if states is None:
            return states_from_activity(audio.speech)
        states = torch.as_tensor(states).long().reshape(-1)
        if states.numel() != audio.num_frames:
            raise LLIAError(f"the state timeline has {states.numel()} frames but the audio has "
                            f"{audio.num_frames}; build the states from the same audio")
        return states

    def stream(self, portrait: Portrait, audio: AudioFeatures, states: torch.Tensor | None = None,
               sampler: SamplerConfig = SamplerConfig(), *,
               step_callback: Callable | None = None) -> Iterator[ClipOutput]:
        """Yield decoded clips in order, as soon as each is ready."""
        # 1. Check inputs
        sampler.validate(self.config.max_clip_frames)
        states = self.resolve_states(audio, states)
        t0 = time.perf_counter()
        # 2. Reference features (cached)
        reference = self.prepare_reference(portrait)
        # 3. Plan clips
        clips = self.plan(audio.num_frames, states, sampler)
        c, h = self.config.autoencoder.latent_channels, self.config.latent_size
        motion = torch.zeros((1, c, 0, h, h), device=self.device)
        for clip in clips:
            # 4. Denoise with the last latents of the previous clip as motion frames
            job = self.new_job(clip, audio, states, motion, sampler)
            self.advance(job, reference, sampler, sampler.motion_split, step_callback)
            motion = self.motion_after(job.latents, sampler.motion_frames)
            self.advance(job, reference, sampler, None, step_callback)
            # 5. Decode
            frames = self.decode_clip(job.latents)
            yield ClipOutput(clip, frames, job.latents.cpu(), time.perf_counter() - t0, self.clip_mouth(job))

    def warm_up(self, portrait: Portrait, sampler: SamplerConfig = SamplerConfig(), *,
                stream: Callable | None = None) -> None:
        """Prepare the portrait's reference and run the first clip's shapes once on silence.

        The first call of each shape allocates and picks kernels (about 150 ms for the bundled
        model on a 2-core CPU); a session that warms up at load, as live mode does, shows its first
        real frame without that. ``stream`` as in :meth:`generate`.
        """
        from ..audio import encode_audio, window_settings

        self.prepare_reference(portrait)
        a, fps = self.config.audio, float(self.config.fps)
        frames = max(1, min(sampler.first_clip, self.config.max_clip_frames))
        silence = np.zeros(int(np.ceil(frames / fps * 16000)), np.float32)
        audio = encode_audio((silence, 16000), fps, **window_settings(a))
        warm = dataclasses.replace(sampler, first_clip=frames)
        for _ in (stream or self.stream)(portrait, audio, None, warm):
            pass

    def generate(self, portrait: Portrait, audio: AudioFeatures, states: torch.Tensor | None = None,
                 sampler: SamplerConfig = SamplerConfig(), *, step_callback: Callable | None = None,
                 clip_callback: Callable[[ClipOutput], None] | None = None,
                 stream: Callable | None = None) -> GenerationOutput:
        """All frames at once (exactly ``audio.num_frames``), plus the matching audio.

        ``stream`` replaces ``self.stream`` (e.g. ``PipelinedLLIA.stream``) as the clip source.
        """
        states = self.resolve_states(audio, states)
        t0 = time.perf_counter()
        chunks, clips, first = [], [], None
        for out in (stream or self.stream)(portrait, audio, states, sampler, step_callback=step_callback):
            first = out.elapsed if first is None else first
            chunks.append(out.frames)
            clips.append(out.clip)
            if clip_callback is not None:
                clip_callback(out)
        total = time.perf_counter() - t0
        frames = torch.cat(chunks)
        timings = {"frames": frames.shape[0], "seconds": total, "fps": frames.shape[0] / total,
                   "first_frame_seconds": first}
        return GenerationOutput(frames, audio.waveform_for_video(), 16000, audio.fps, states, clips, timings)
