"""Pipeline stages as two gloo ranks (two processes) give the frames of the sequential pipeline."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import torch

from conftest import ROOT

RANK_SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    from test_distributed import inputs
    from llia_core.pipeline.distributed import run_stage
    torch.set_num_threads(1)
    rank = int(sys.argv[1])
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    pipe, portrait, audio, sampler = inputs()
    outs = run_stage(pipe, portrait, audio, None, sampler)
    if rank == 1:
        torch.save({{"frames": torch.cat([o.frames for o in outs]), "starts": [o.clip.start for o in outs]}}, {out!r})
    dist.destroy_process_group()
""")


def inputs():
    from conftest import tiny_config
    from llia_core.audio import encode_audio
    from llia_core.models import LLIAModel
    from llia_core.pipeline import LLIAPipeline, SamplerConfig
    from llia_core.portrait import prepare_portrait

    torch.manual_seed(0)
    model = LLIAModel(tiny_config()).eval().requires_grad_(False)
    torch.nn.init.normal_(model.denoiser.unet.conv_out.weight, std=0.05)
    cfg = model.config
    t = np.arange(int(1.3 * 16000)) / 16000
    wave = (0.3 * np.sin(2 * math.pi * 220 * t) * (np.sin(2 * math.pi * 3 * t) > 0)).astype(np.float32)
    audio = encode_audio((wave, 16000), 25, n_mels=cfg.audio.n_mels, context=cfg.audio.context,
                         mel_per_token=cfg.audio.mel_per_token, token_seconds=cfg.audio.token_seconds)
    image = np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    portrait = prepare_portrait(image, cfg.resolution, mode="whole")
    return LLIAPipeline(model), portrait, audio, SamplerConfig(steps=2, first_clip=1, seed=5, motion_step=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_reproduce_the_sequential_pipeline(tmp_path):
    out = tmp_path / "rank1.pt"
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), port=_free_port(), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    got = torch.load(out)
    pipe, portrait, audio, sampler = inputs()
    want = pipe.generate(portrait, audio, sampler=sampler)
    assert got["frames"].shape == want.frames.shape == (math.ceil(1.3 * 25), 32, 32, 3)
    assert got["starts"] == [c.start for c in want.clips]
    assert torch.allclose(got["frames"], want.frames, atol=1e-5)
