"""Pipeline parallelism: explicit stages that overlap (the UNet/VAE pipelining of LLIA).

A clip's work is split into stages, StreamDiffusion-style:

    stage 0: conditioning + the first ``motion_step`` denoising steps of clip k+1
    stage 1: the remaining steps of clip k + VAE decode (+ the caller's sink)

Stage 0 hands the next clip its motion frames right after its own steps (``motion_step``), so
it never waits for stage 1, and the two run at the same time: on two devices (``devices``), or
on one CPU as two threads with ``threads_per_stage`` cores each, stage 0 borrowing stage 1's
while that one waits (``core_sharing.py``). Frames are those of ``LLIAPipeline.stream`` with the
same ``SamplerConfig`` (same ``motion_step``); only the wall clock changes, and with lent cores the
float rounding: the thread count of each layer depends on timing, so two runs differ by up to ~2e-7
(a few pixels of a video by one 8-bit level; ``share_cores=False`` gives bitwise-repeatable runs).
For stages in separate processes or machines see ``distributed.py``.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from typing import Callable, Iterator

import torch

from ..audio import AudioFeatures
from ..errors import LLIAError
from ..portrait import Portrait
from .core_sharing import CoreSharing, restore_threads, use_threads
from .pipeline import ClipOutput, LLIAPipeline, SamplerConfig

_DONE = object()


def stage_bounds(steps: int, stages: int, motion_step: int) -> list[int]:
    """Step boundaries of each stage: stage 0 ends at ``motion_step``; the rest share what is left."""
    rest = steps - motion_step
    later = stages - 1
    bounds = [0, motion_step]
    for i in range(1, later + 1):
        bounds.append(motion_step + round(rest * i / later))
    if len(set(bounds)) != len(bounds):
        raise LLIAError(f"{steps} steps cannot be split into {stages} stages with motion_step={motion_step}; "
                        "use more steps or fewer stages")
    return bounds


def pipelined_sampler(sampler: SamplerConfig, stages: int = 2) -> SamplerConfig:
    """``sampler`` with the motion hand-over a pipeline of ``stages`` needs (the first stage's steps)."""
    if sampler.sampler != "consistency":
        raise LLIAError("pipelined generation needs the consistency sampler (teacher samplers run sequentially)")
    if sampler.steps < stages:
        raise LLIAError(f"{stages} pipeline stages need at least {stages} denoising steps, not {sampler.steps}")
    if sampler.motion_step:
        return sampler
    import dataclasses

    return dataclasses.replace(sampler, motion_step=max(1, sampler.steps // stages))


def clip_stream(pipe: LLIAPipeline, sampler: SamplerConfig, mode: str = "auto", threads: int | None = None,
                threads_per_stage: int | None = None, share_cores: bool = True) -> tuple[Callable, SamplerConfig]:
    """(stream function, sampler) for ``mode``: "threads" pipelines, "off" runs ``pipe.stream``, "auto"
    pipelines where it is faster (the consistency sampler, 2+ steps, 2+ cores). The pipelined sampler
    takes the next clip's motion frames after the first step, so its frames differ slightly from
    sequential ones. ``threads``: the cores to use (default: PyTorch's count in the calling thread),
    split between the stages unless ``threads_per_stage`` says otherwise. ``share_cores=False``: each
    stage keeps its own cores (slower, but two runs give the same frames bit for bit).
    """
    import os

    use = mode == "threads" or (mode == "auto" and sampler.sampler == "consistency" and sampler.steps >= 2
                                and (os.cpu_count() or 1) >= 2)
    if not use:
        return pipe.stream, sampler
    per_stage = threads_per_stage or max(1, (threads or torch.get_num_threads()) // 2)
    return PipelinedLLIA(pipe, threads_per_stage=per_stage, share_cores=share_cores).stream, pipelined_sampler(sampler)


def _set_cv2_threads(n: int | None) -> int | None:
    """Set OpenCV's thread count (None: leave it); returns the previous one (None without OpenCV)."""
    try:
        import cv2
    except ImportError:
        return None
    before = cv2.getNumThreads()
    if n is not None:
        cv2.setNumThreads(n)
    return before


class PipelinedLLIA:
    """Two overlapping stages over one model: ``stream()`` yields the same clips as ``LLIAPipeline``.

    Args:
        pipe: the pipeline whose model and device stage 0 uses.
        devices: optional (stage 0 device, stage 1 device); a second device gets its own model copy.
        threads_per_stage: CPU threads each stage owns (both stages run at once); on one CPU, stage 0
            also uses stage 1's while stage 1 waits for its next clip (``share_cores``).
        share_cores: lend stage 1's idle cores to stage 0 (CPU, one device, ``threads_per_stage`` set).
    """

    def __init__(self, pipe: LLIAPipeline, devices: tuple | list | None = None, threads_per_stage: int | None = None,
                 share_cores: bool = True):
        self.first = pipe
        self.threads = threads_per_stage
        self.share_cores = share_cores
        if devices and torch.device(devices[1]) != pipe.device:
            model = copy.deepcopy(pipe.model).to(devices[1])
            self.second = LLIAPipeline(model, devices[1], pipe.dtype)
        else:
            self.second = pipe

    @property
    def config(self):
        return self.first.config

    def _core_sharing(self) -> CoreSharing | None:
        """Thread counts per stage (None: leave them); cores lent only between stages on one CPU."""
        if not self.threads:
            return None
        one_cpu = self.second is self.first and self.first.device.type == "cpu"
        return CoreSharing(self.threads, self.threads, lend=self.share_cores and one_cpu)

    def stream(self, portrait: Portrait, audio: AudioFeatures, states: torch.Tensor | None = None,
               sampler: SamplerConfig = SamplerConfig(), *, step_callback: Callable | None = None) -> Iterator[ClipOutput]:
        sampler = pipelined_sampler(sampler)
        sampler.validate(self.config.max_clip_frames)
        first, second = self.first, self.second
        states = first.resolve_states(audio, states)
        t0 = time.perf_counter()
        ref0 = first.prepare_reference(portrait)
        ref1 = second.prepare_reference(portrait)
        clips = first.plan(audio.num_frames, states, sampler)
        handoff: queue.Queue = queue.Queue(maxsize=1)  # one clip in flight between the stages
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        cores = self._core_sharing()

        def stage0() -> None:
            if cores is not None:
                cores.start_lead()
            hooks = cores.attach(first.model.denoiser) if cores is not None and cores.lend else []
            try:
                c, h = self.config.autoencoder.latent_channels, self.config.latent_size
                motion = torch.zeros((1, c, 0, h, h), device=first.device)
                for clip in clips:
                    if stop.is_set():
                        return
                    job = first.new_job(clip, audio, states, motion, sampler)
                    first.advance(job, ref0, sampler, sampler.motion_split, step_callback)
                    if cores is not None:
                        cores.give_back()
                    motion = first.motion_after(job.latents, sampler.motion_frames)
                    if not put(job):
                        return
                put(_DONE)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                put(exc)
            finally:
                for hook in hooks:
                    hook.remove()
                if cores is not None:
                    cores.give_back()

        worker = threading.Thread(target=stage0, name="llia-stage0", daemon=True)
        threads_before = torch.get_num_threads()
        if cores is not None:
            cores.start_lag()
            # OpenCV's own thread pool (the caller's paste-back between clips) would take stage 0's core:
            # one thread while the stages run (demo at 512 px, 11 interleaved pairs: +1.9% FPS on average,
            # -3.6 to +5.7%, 9 of 11 faster)
            cv2_threads = _set_cv2_threads(1)
        worker.start()
        try:
            while True:
                if cores is None:
                    item = handoff.get()
                else:
                    with cores.waiting():
                        item = handoff.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                if cores is not None and cores.lend and item.clip is clips[-1]:
                    # stage 0 has nothing left to compute: the last clip (and its paste-back and
                    # encoding in the caller) gets every core instead of leaving one idle
                    use_threads(cores.lead + cores.lag)
                job = second.advance(item, ref1, sampler, None, step_callback)
                frames = second.decode_clip(job.latents)
                yield ClipOutput(job.clip, frames, job.latents.cpu(), time.perf_counter() - t0, second.clip_mouth(job))
        finally:
            stop.set()
            worker.join()
            if cores is not None:
                restore_threads(threads_before)
                _set_cv2_threads(cv2_threads)

    def generate(self, portrait: Portrait, audio: AudioFeatures, states: torch.Tensor | None = None,
                 sampler: SamplerConfig = SamplerConfig(), **kwargs):
        """Collect ``stream()`` like ``LLIAPipeline.generate``."""
        return self.first.generate(portrait, audio, states, sampler, stream=self.stream, **kwargs)
