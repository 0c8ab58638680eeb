"""Pipeline stages as ``torch.distributed`` ranks (gloo on CPU, NCCL on GPUs).

Rank r runs the denoising steps ``stage_bounds(...)[r]:[r+1]`` of every clip and sends the clip
on to rank r+1; the last rank also decodes and sinks the frames. Rank 0 hands motion frames to
its own next clip right after its steps (``motion_step``), so no rank ever waits on a later one
and all ranks work at once. Every rank plans the same clips from the same inputs, so only
latents travel: per clip the motion frames, the current noisy latents and the clean estimate, plus
the first step's deep features when later steps reuse them (``models/feature_reuse.py``).

Launch with ``torchrun --nproc-per-node N -m llia_core generate --distributed ...`` or call
:func:`run_stage` from processes that joined one process group.
"""

from __future__ import annotations

import time
from typing import Iterator

import torch
import torch.distributed as dist

from ..audio import AudioFeatures
from ..portrait import Portrait
from ..sampling import ConsistencyRun, consistency_scheduler
from .pipeline import ClipOutput, LLIAPipeline, SamplerConfig
from .pipelined import pipelined_sampler, stage_bounds


def _motion_lengths(clips, motion_frames: int) -> list[int]:
    return [0] + [min(motion_frames, c.length) for c in clips[:-1]]


def _send_optional(t: torch.Tensor | None, dst: int, wire, group) -> list:
    """Send a tensor whose shape the receiver does not know (or None): a 4-number header, then the data."""
    shape = torch.zeros(4, dtype=torch.long)
    if t is not None:
        shape[:t.ndim] = torch.tensor(t.shape)
    handles = [dist.isend(shape.to(wire), dst=dst, group=group)]
    if t is not None:
        handles.append(dist.isend(t.to(wire, torch.float32).contiguous(), dst=dst, group=group))
    return handles


def _recv_optional(src: int, wire, group, device, dtype) -> torch.Tensor | None:
    shape = torch.empty(4, dtype=torch.long, device=wire)
    dist.recv(shape, src=src, group=group)
    if not bool(shape.any()):
        return None
    t = torch.empty(tuple(int(v) for v in shape), device=wire)
    dist.recv(t, src=src, group=group)
    return t.to(device, dtype)


def run_stage(pipe: LLIAPipeline, portrait: Portrait, audio: AudioFeatures, states: torch.Tensor | None = None,
              sampler: SamplerConfig = SamplerConfig(), group=None) -> list[ClipOutput]:
    """This process's stage of a distributed generation; the last rank returns the clips."""
    return list(stage_stream(pipe, portrait, audio, states, sampler, group))


def stage_stream(pipe: LLIAPipeline, portrait: Portrait, audio: AudioFeatures, states: torch.Tensor | None = None,
                 sampler: SamplerConfig = SamplerConfig(), group=None) -> Iterator[ClipOutput]:
    """This process's stage; on the last rank it yields each decoded clip as soon as it is ready."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    sampler = pipelined_sampler(sampler, world)
    sampler.validate(pipe.config.max_clip_frames)
    bounds = stage_bounds(sampler.steps, world, sampler.motion_step)
    states = pipe.resolve_states(audio, states)
    t0 = time.perf_counter()
    reference = pipe.prepare_reference(portrait)
    clips = pipe.plan(audio.num_frames, states, sampler)
    c, h = pipe.config.autoencoder.latent_channels, pipe.config.latent_size
    wire = torch.device("cpu") if dist.get_backend(group) == "gloo" else pipe.device
    lengths = _motion_lengths(clips, pipe.motion_count(sampler.motion_frames))
    pending: list = []
    motion = torch.zeros((1, c, 0, h, h), device=pipe.device)
    for k, clip in enumerate(clips):
        if rank == 0:
            job = pipe.new_job(clip, audio, states, motion, sampler)
        else:
            shapes = [(1, c, lengths[k], h, h), (1, c, clip.length, h, h), (1, c, clip.length, h, h)]
            received = [torch.empty(s, device=wire) for s in shapes]
            for t in received:
                dist.recv(t, src=rank - 1, group=group)
            motion_k, x, denoised = (t.to(pipe.device) for t in received)
            job = pipe.new_job(clip, audio, states, motion_k, sampler)
            job.run = ConsistencyRun(consistency_scheduler(pipe.config), x, sampler.steps, job.run.seed,
                                     done=bounds[rank], denoised=denoised)
            if job.deep is not None:
                job.deep.features = _recv_optional(rank - 1, wire, group, pipe.device, pipe.dtype)
        pipe.advance(job, reference, sampler, bounds[rank + 1])
        if rank == 0:
            motion = pipe.motion_after(job.latents, sampler.motion_frames)
        if rank < world - 1:
            for handle in pending:  # at most one clip in flight per link
                handle.wait()
            pending = [dist.isend(t.to(wire).contiguous(), dst=rank + 1, group=group)
                       for t in (job.motion, job.run.x, job.run.denoised)]
            if job.deep is not None:
                pending += _send_optional(job.deep.features, rank + 1, wire, group)
        else:
            yield ClipOutput(clip, pipe.decode_clip(job.latents), job.latents.cpu(), time.perf_counter() - t0,
                             pipe.clip_mouth(job))
    for handle in pending:
        handle.wait()
