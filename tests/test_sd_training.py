"""Paper-scale path on CPU: a tiny SD-shaped model converted, trained by two gloo ranks on real clips
(base, resume, distill), then run by ``generate``. Real clips are read from ../shared/realfaces (never
copied into the repository); skips where they are absent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llia_core.checkpoints import load_model, read_metadata
from llia_core.sd_conversion import convert_sd
from llia_core.training.data.videos import ingest_videos
from llia_core.video_io import read_video
from sd_fixtures import save_diffusers_folder, tiny_sd

ROOT = Path(__file__).resolve().parents[1]
TALKING = ROOT.parent / "shared" / "realfaces" / "talking"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    videos = [TALKING / n for n in ("mimictalk_May_5s.mp4", "hdtf_RD_Radio2_000.mp4")]
    if not all(v.exists() for v in videos):
        pytest.skip("../shared/realfaces/talking is not here")
    root = tmp_path_factory.mktemp("paper")
    (root / "videos").mkdir()
    for v in videos:
        shutil.copy(v, root / "videos" / v.name)
    ingest_videos(root / "videos", root / "data", resolution=32, max_seconds=3.0, progress=False)
    unet, vae = tiny_sd()
    convert_sd(save_diffusers_folder(unet, vae, root / "sd"), root / "init.safetensors", resolution=32,
               dtype=torch.float32)
    return root


def torchrun(*args, ranks: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
           "-m", "llia_core", "train", "--device", "cpu", "--threads", "1", "--batch-frames", "6", "--log-every", "1",
           *map(str, args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        raise
    assert proc.returncode == 0, err[-3000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _losses(path: Path) -> list[float]:
    rows = path.read_text().strip().splitlines()[1:]
    return [float(r.split(",")[1]) for r in rows]


def test_two_ranks_train_resume_distill_and_generate(setup, tmp_path):
    base = tmp_path / "base"
    common = ("--data", setup / "data", "--save-every", "1")
    # a run stopped at step 2 of 4 (as if killed after its last save) ...
    first = torchrun("--stage", "base", "--init", setup / "init.safetensors", "--out-dir", base, "--steps", 4,
                     "--stop-step", 2, *common)
    assert first.stdout.count("wrote") == 1  # rank 0 alone writes and reports
    meta = read_metadata(base / "model.safetensors")
    assert meta["steps"] == "2" and meta["ranks"] == "2" and meta["ranks_weight_spread"] == "0"
    # ... continues from its saved step, with gradient checkpointing on (as on GPUs)
    again = torchrun("--stage", "base", "--init", setup / "init.safetensors", "--out-dir", base, "--steps", 4,
                     "--gradient-checkpointing", "on", *common)
    assert "resumed base from step 2" in again.stdout + again.stderr
    losses = _losses(base / "log.csv")
    assert len(losses) == 4 and all(np.isfinite(losses)) and all(0 < x < 10 for x in losses)
    meta = read_metadata(base / "model.safetensors")
    assert meta["steps"] == "4" and meta["ranks_weight_spread"] == "0"
    trained = load_model(base / "model.safetensors")
    start = load_model(setup / "init.safetensors")
    moved = [n for n, p in trained.named_parameters() if not torch.equal(p, dict(start.named_parameters())[n])]
    assert any(n.endswith("processor.gate") for n in moved) and any("motion_modules" in n for n in moved)
    distill = tmp_path / "distill"
    torchrun("--stage", "distill", "--init", base / "model.safetensors", "--out-dir", distill, "--steps", 2, *common)
    assert len(_losses(distill / "log.csv")) == 2

    import soundfile as sf

    speech, rate = sf.read(str(ROOT / "llia_core" / "assets" / "speech.wav"), dtype="float32")
    sf.write(str(tmp_path / "two_seconds.wav"), speech[: 2 * rate], rate)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "avatar.mp4"
    done = subprocess.run([sys.executable, "-m", "llia_core", "generate", "--model", str(distill / "model.safetensors"),
                           "--audio", str(tmp_path / "two_seconds.wav"), "--out", str(out), "--steps", "2",
                           "--max-size", "128"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    video = read_video(out)
    assert video.frames.shape[0] == 50 and video.frames.shape[1:] == (128, 128, 3)
    assert video.audio is not None and abs(video.audio.shape[-1] / video.sample_rate - 2.0) < 0.1
    assert video.frames.float().std() > 5  # a picture, not a blank


def test_the_training_estimate_counts_flops_and_memory():
    from llia_core.training.estimate import estimate_step

    e = estimate_step("demo", clips=1, frames=4)
    bigger = estimate_step("demo", clips=2, frames=4)
    assert 0 < e.forward_tflop < e.step_tflop < e.step_checkpointed_tflop <= 4.0001 * e.forward_tflop
    assert bigger.step_tflop == pytest.approx(2 * e.step_tflop, rel=0.05)  # FLOPs scale with the batch
    assert 0 < e.activations_checkpointed_gib < e.activations_gib  # checkpointing keeps less for the backward
    assert bigger.activations_gib == pytest.approx(2 * e.activations_gib, rel=0.1)
    trained = sum(p.numel() for n, p in LLIAModel_params("demo") if not n.startswith("autoencoder."))
    assert e.trained_parameters == trained
    assert e.seconds["A100"] > e.seconds["H100/H200 SXM"] > 0


def LLIAModel_params(name):
    from llia_core.config import get_config
    from llia_core.models import LLIAModel

    with torch.device("meta"):
        return list(LLIAModel(get_config(name)).named_parameters())
