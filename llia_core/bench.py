"""``python -m llia_core bench``: speed, latency and memory of LLIA vs a Hallo/EchoMimic-style baseline.

Every number is a ratio against a baseline measured in the same process (or, for memory, by the
same script), never an absolute target baked into a test. Rows:

- ``llia``: consistency sampler (2 steps), short first clip, two overlapping pipeline stages
  (one thread each), bf16 on CPUs that have it (the fastest precision measured here).
- ``llia-no-pipeline``: the same on one worker (``--threads`` threads, by default 1, to compare
  "two single-thread workers vs one"), and ``llia-no-pipeline-2t`` with both cores on one worker.
- ``llia-fp32`` / ``llia-int8``: the ``llia`` row at other precisions, with PSNR vs fp32 frames.
- ``baseline``: 25 DDIM steps with classifier-free guidance (two model rows per step), fixed
  16-frame clips, no pipelining, fp32: how Hallo/EchoMimic-style models sample.

Large configs (``sd15-384``) are too slow on a CPU to run the baseline to the end, so with
``--calls-only`` every row is composed from timed denoiser calls of the exact shapes it would
make (the calls are identical, so the sum is the run time, minus Python overhead).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoints import load_model
from .config import get_config
from .models import LLIAModel
from .models.feature_reuse import DeepFeatures
from .models.mouth_warp import NEUTRAL_MOUTH
from .pipeline import LLIAPipeline, PipelinedLLIA, SamplerConfig, pipelined_sampler
from .quantization import cpu_has_bf16, model_at_precision

LLIA_SAMPLER = SamplerConfig(sampler="consistency", steps=2, first_clip=1, clip_frames=16)
BASELINE_SAMPLER = SamplerConfig(sampler="ddim", steps=25, guidance_scale=3.5, first_clip=16, clip_frames=16,
                                 growth=1.0, motion_frames=2)


def _audio(config, seconds: float):
    from .audio import encode_audio, window_settings

    rng = np.random.default_rng(0)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    wave = (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.01, n))
    return encode_audio((wave.astype(np.float32), 16000), config.fps, **window_settings(config.audio))


def _portrait(config):
    from .portrait import prepare_portrait

    asset = Path(__file__).parent / "assets" / "portrait.png"
    return prepare_portrait(asset, config.resolution, view=config.framing)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


precision_model = model_at_precision  # the model as it runs at fp32 / bf16 / fp16 / int8


def run_case(model: LLIAModel, audio, portrait, sampler: SamplerConfig, *, pipelined: bool, threads: int,
             precision: str = "fp32", warmup: bool = True) -> dict:
    """Generate once (after a short warm-up) and time it: FPS, time to first frame."""
    m, dtype = precision_model(model, precision)
    pipe = LLIAPipeline(m, dtype=dtype)
    torch.set_num_threads(threads)
    if sampler.sampler == "consistency":  # same motion hand-over with and without pipelining: same frames
        sampler = pipelined_sampler(sampler)
    if pipelined:
        gen = PipelinedLLIA(pipe, threads_per_stage=threads).generate
    else:
        gen = pipe.generate
    if warmup:  # first calls allocate and pick kernels; a live session does this at model load
        gen(portrait, _audio(model.config, 0.2), sampler=sampler)
    out = gen(portrait, audio, sampler=sampler)
    t = out.timings
    return {"fps": t["fps"], "first_frame_ms": 1000 * t["first_frame_seconds"], "frames": t["frames"],
            "seconds": t["seconds"], "frames_tensor": out.frames}


def time_calls(model: LLIAModel, sampler: SamplerConfig, num_frames: int, threads: int, repeats: int = 1) -> dict:
    """Time the denoiser calls and decodes one run would make, composing FPS and time to first frame."""
    torch.set_num_threads(threads)
    pipe = LLIAPipeline(model)
    dtype = pipe.dtype
    cfg = model.config
    states = torch.zeros(num_frames, dtype=torch.long)
    clips = pipe.plan(num_frames, states, sampler)
    c, h = cfg.autoencoder.latent_channels, cfg.latent_size
    rows = 1 + (sampler.guidance_scale != 1.0)
    portrait = _portrait(cfg)
    reference = pipe.prepare_reference(portrait)
    cache: dict[tuple, float] = {}

    def call_seconds(length: int, motion: int, later: bool = False) -> float:
        """One denoiser call; ``later``: a later consistency step reusing the first one's deep features."""
        key = (length, motion, later)
        if key not in cache:
            x = torch.randn(rows, c, motion + length, h, h).to(dtype)
            windows = torch.randn(rows, motion + length, cfg.audio.num_tokens,
                                  cfg.audio.mel_per_token * cfg.audio.n_mels).to(dtype)
            st = torch.zeros(rows, motion + length, dtype=torch.long)
            flags = torch.zeros(rows, motion + length)
            mouth = torch.tensor(NEUTRAL_MOUTH, dtype=dtype).expand(rows, motion + length, 3)
            bank = {k: v.expand(rows, -1, -1) for k, v in reference.bank.items()}
            best = float("inf")
            deep = DeepFeatures() if later else None
            with torch.no_grad():
                for i in range(repeats + later):
                    t0 = time.perf_counter()
                    model.denoiser(x, torch.full((rows,), 500), windows, st, reference.latent.expand(rows, -1, -1, -1),
                                   bank, reference.face_mask.expand(rows, -1, -1, -1), flags, deep=deep, mouth=mouth)
                    if not (later and i == 0):  # the first call of a reuse pair fills the features
                        best = min(best, time.perf_counter() - t0)
            cache[key] = best
        return cache[key]

    with torch.no_grad():  # frames decode independently: time one, scale by the clip length
        t0 = time.perf_counter()
        model.decode_latents(torch.randn(1, c, h, h).to(dtype))
        per_frame_decode = time.perf_counter() - t0

    def decode_seconds(length: int) -> float:
        return length * per_frame_decode

    mouth_cache: dict[int, float] = {}

    def mouth_seconds(frames: int) -> float:
        """The mouth model on a clip's frames (once per clip, before its first step)."""
        if model.mouth_model is None:
            return 0.0
        if frames not in mouth_cache:
            mc = model.mouth_model.config
            w = torch.randn(frames, mc.window_frames, mc.channels)
            with torch.no_grad():
                model.mouth_model(w)
                t0 = time.perf_counter()
                model.mouth_model(w)
                mouth_cache[frames] = time.perf_counter() - t0
            if mc.phones:  # the phones it hears, decoded as the clip's audio arrives
                from .audio.phones import phone_labels

                noise = torch.randn(int(frames / 25.0 * 16000) + 640) * 0.05
                t0 = time.perf_counter()
                phone_labels(noise, mc.phone_lag)
                mouth_cache[frames] += time.perf_counter() - t0
        return mouth_cache[frames]

    total, first, prev = 0.0, None, 0
    for clip in clips:
        motion = min(pipe.motion_count(sampler.motion_frames), prev)
        later_steps = (sampler.steps - 1) * call_seconds(clip.length, motion, later=sampler.reuses_features)
        total += (mouth_seconds(motion + clip.length) + call_seconds(clip.length, motion) + later_steps
                  + decode_seconds(clip.length))
        first = total if first is None else first
        prev = clip.length
    return {"fps": num_frames / total, "first_frame_ms": 1000 * first, "frames": num_frames, "seconds": total,
            "composed_from_calls": len(cache) + 1}


def flops_per_frame(config_name: str) -> float:
    """FLOPs of one denoiser call per frame (16-frame clip, no guidance), counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = get_config(config_name)
    with torch.device("meta"):
        model = LLIAModel(cfg).eval().requires_grad_(False)
    c, h, f = cfg.autoencoder.latent_channels, cfg.latent_size, 16
    t = cfg.audio.num_tokens
    bank = {}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        latent = torch.zeros(1, c, h, h, device="meta")
        bank = model.reference_net(latent)
        ref_flops = counter.get_total_flops()
        model.denoiser(torch.zeros(1, c, f, h, h, device="meta"), torch.zeros(1, device="meta"),
                       torch.zeros(1, f, t, cfg.audio.mel_per_token * cfg.audio.n_mels, device="meta"),
                       torch.zeros(1, f, dtype=torch.long, device="meta"), latent, bank,
                       torch.zeros(1, 1, cfg.resolution, cfg.resolution, device="meta"), torch.zeros(1, f, device="meta"),
                       mouth=torch.zeros(1, f, 3, device="meta"))
        unet = counter.get_total_flops() - ref_flops
        model.decode_latents(torch.zeros(1, c, h, h, device="meta"))
        decode = counter.get_total_flops() - ref_flops - unet
    return {"denoiser_per_frame": unet / f, "decode_per_frame": decode, "reference_once": ref_flops}


def _write_test_audio(path: Path, minutes: float, block_seconds: int = 60) -> None:
    """A speech-like on/off tone plus noise, written a minute at a time.

    Block by block because this process's peak must stay small: a child started with fork/vfork +
    exec inherits its parent's peak RSS in ``ru_maxrss`` (Linux carries the old address space's
    high-water mark across exec), which made an hour of audio synthesised here in one piece (2.3 GB)
    look like the child's peak.
    """
    import soundfile as sf

    n = int(minutes * 60 * 16000)
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="FLOAT") as f:
        for a in range(0, n, block_seconds * 16000):
            t = np.arange(a, min(n, a + block_seconds * 16000)) / 16000
            wave = 0.2 * np.sin(2 * np.pi * 160 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0) + rng.normal(0, 0.005, t.size)
            f.write(wave.astype(np.float32))


# The child reports its own address space's high-water mark (VmHWM), which exec resets, and falls
# back to ru_maxrss where /proc is missing.
_PEAK_CODE = (
    "import resource, sys; from llia_core.cli import main; rc = main(sys.argv[1:]); "
    "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')] "
    "if sys.platform.startswith('linux') else []; "
    "print('PEAK_RSS_KB', hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")


def peak_rss_mb(minutes: float, model: str, steps: int, workdir: Path) -> dict:
    """Peak RSS of a CLI run streaming ``minutes`` of audio to an mp4 (a fresh process per run)."""
    wav = workdir / f"audio_{minutes:g}min.wav"
    _write_test_audio(wav, minutes)
    cmd = [sys.executable, "-c", _PEAK_CODE, "generate", "--audio", str(wav), "--model", model, "--steps", str(steps),
           "--out", str(workdir / f"out_{minutes:g}min.mp4"), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    kb = int(res.stdout.split("PEAK_RSS_KB")[1].split()[0])
    wav.unlink()
    from .video_io import probe_video

    info = probe_video(workdir / f"out_{minutes:g}min.mp4")  # the file is complete and plays
    return {"minutes": minutes, "peak_rss_mb": kb / 1024, "wall_seconds": time.perf_counter() - t0,
            "frames_written": info["num_frames"], "frames_expected": math.ceil(minutes * 60 * 25 - 1e-6),
            "audio_seconds": info["audio_seconds"]}


_CLI_LINE = re.compile(r"(\d+)x(\d+), (\d+) frames .* generation ([\d.]+) FPS \| time to first frame ([\d.]+) ms")


def end_to_end_rows(sizes: list[int], model: str, workdir: Path, log, dtype: str = "auto") -> dict:
    """The main job as a user runs it (``python -m llia_core generate``, bundled speech, fresh process
    per run) on the bundled photo resized to each size, with full-size output, and once with the
    crop output: the baseline of this table, so each ratio is what compositing + encoding costs. ``dtype``:
    the CLI's ``--dtype`` (auto: bf16 on CPUs with native bf16, else fp32)."""
    import cv2

    from .portrait import load_image

    photo = load_image(Path(__file__).parent / "assets" / "portrait.png")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rows = {}
    for size in [0] + sizes:
        path = workdir / f"portrait_{size or 512}.png"
        img = photo if size in (0, photo.shape[0]) else cv2.resize(photo, (size, size), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(path), img[:, :, ::-1])
        name = "crop output (128 px)" if size == 0 else f"full output {size} px"
        extra = ["--output", "crop"] if size == 0 else ["--max-size", str(size)]
        log(f"end to end: {name} ...")
        res = subprocess.run([sys.executable, "-m", "llia_core", "generate", "--portrait", str(path), "--model", model,
                              "--out", str(workdir / f"out_{size}.mp4"), "--quiet", "--dtype", dtype, *extra],
                             capture_output=True, text=True, env=env)
        found = _CLI_LINE.search(res.stdout)
        if res.returncode != 0 or not found:
            raise RuntimeError(f"{name}: {res.stderr[-2000:]}")
        w, h, frames, fps, first = found.groups()
        rows[name] = {"width": int(w), "height": int(h), "frames": int(frames), "fps": float(fps),
                      "first_frame_ms": float(first)}
    base = rows["crop output (128 px)"]
    for row in rows.values():
        row["fps_x_crop"] = row["fps"] / base["fps"]
        row["first_frame_x_crop"] = row["first_frame_ms"] / base["first_frame_ms"]
    return rows


def bench_config(name: str, model: LLIAModel, seconds: float, threads: int, calls_only: bool, log) -> dict:
    """All rows for one model; ratios against the baseline row of the same run."""
    rows: dict[str, dict] = {}
    longest = model.config.max_clip_frames
    base_sampler = dataclasses.replace(BASELINE_SAMPLER, first_clip=min(16, longest), clip_frames=min(16, longest))
    audio = _audio(model.config, seconds)
    portrait = _portrait(model.config)
    n = audio.num_frames
    if calls_only:
        plan = [("llia-no-pipeline", "fp32")] + [(f"llia-{p}-no-pipeline", p) for p in
                                                   (["bf16"] if cpu_has_bf16() else []) + ["int8"]]
        short = _audio(model.config, 2 / model.config.fps)  # 2 frames: what each precision does to the output
        frames = {}
        for row, precision in plan:
            log(f"{name}: {row} ...")
            m, dtype = model_at_precision(model, precision)
            rows[row] = time_calls(m, LLIA_SAMPLER, n, threads)
            rows[row].update(precision=precision, workers=f"1x{threads}t")
            frames[precision] = LLIAPipeline(m, dtype=dtype).generate(portrait, short, sampler=LLIA_SAMPLER).frames
            if precision != "fp32":
                rows[row]["psnr_vs_fp32_db"] = _psnr(frames[precision], frames["fp32"])
            del m
        log(f"{name}: baseline ...")
        rows["baseline"] = time_calls(model, base_sampler, n, threads)
        rows["baseline"].update(precision="fp32", workers=f"1x{threads}t")
    else:
        bf16 = "bf16" if cpu_has_bf16() else "fp32"
        plan = [
            ("llia", LLIA_SAMPLER, True, 1, bf16),
            ("llia-no-pipeline", LLIA_SAMPLER, False, 1, bf16),
            ("llia-no-pipeline-2t", LLIA_SAMPLER, False, 2, bf16),
            ("llia-fp32", LLIA_SAMPLER, True, 1, "fp32"),
            ("llia-int8", LLIA_SAMPLER, True, 1, "int8"),
            ("llia-fp32-no-pipeline", LLIA_SAMPLER, False, 1, "fp32"),
            ("baseline", base_sampler, False, threads, "fp32"),
        ]
        for row, sampler, piped, th, precision in plan:
            log(f"{name}: {row} ...")
            rows[row] = run_case(model, audio, portrait, sampler, pipelined=piped, threads=th, precision=precision)
            rows[row]["precision"] = precision
            rows[row]["workers"] = f"{2 if piped else 1}x{th}t"
        ref = rows["llia-fp32"].pop("frames_tensor")
        for row in rows.values():
            frames = row.pop("frames_tensor", None)
            if frames is not None and frames.shape == ref.shape:
                row["psnr_vs_fp32_db"] = _psnr(frames, ref)
    base = rows["baseline"]
    for row in rows.values():
        row["fps_x_baseline"] = row["fps"] / base["fps"]
        row["first_frame_x_baseline"] = base["first_frame_ms"] / row["first_frame_ms"]
    return rows


def format_rows(name: str, rows: dict) -> str:
    lines = [f"### {name}", "", "| configuration | workers | precision | FPS | first frame ms | x baseline FPS | "
             "x baseline first frame | PSNR vs fp32 dB |", "|---|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        psnr = r.get("psnr_vs_fp32_db")
        lines.append(f"| {k} | {r.get('workers', '-')} | {r.get('precision', 'fp32')} | {r['fps']:.2f} | "
                     f"{r['first_frame_ms']:.0f} | {r['fps_x_baseline']:.1f} | {r['first_frame_x_baseline']:.1f} | "
                     f"{'-' if psnr is None else ('inf' if psnr == float('inf') else f'{psnr:.1f}')} |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = [k for k in results if k.startswith("config:")]
    extra = [k for k in ("memory", "resolution") if k in results] + (["end_to_end"] * 2 if "end_to_end" in results else [])
    if not configs and not extra:
        return
    fig, axes = plt.subplots(1, 2 * len(configs) + len(extra), figsize=(5 * (2 * len(configs) + len(extra)), 4))
    axes = np.atleast_1d(axes)
    i = 0
    for key in configs:
        rows = results[key]
        names = list(rows)
        for metric, label in (("fps", "frames per second (log)"), ("first_frame_ms", "time to first frame, ms (log)")):
            ax = axes[i]
            i += 1
            vals = [rows[n][metric] for n in names]
            ax.barh(names, vals, color=["#c44" if n == "baseline" else "#37a" for n in names])
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_title(key.split(":", 1)[1])
            for y, v in enumerate(vals):
                ax.text(v, y, f" {v:.3g}", va="center", fontsize=8)
    if "memory" in results:
        ax = axes[i]
        i += 1
        mem = results["memory"]
        ax.plot([m["minutes"] for m in mem], [m["peak_rss_mb"] for m in mem], "o-")
        ax.set_xlabel("audio minutes streamed to mp4")
        ax.set_ylabel("peak RSS, MB")
        ax.set_ylim(0, max(m["peak_rss_mb"] for m in mem) * 1.3)
        ax.set_title("memory vs audio length")
    if "end_to_end" in results:  # the main job as run from the command line, per output size
        rows = results["end_to_end"]
        names = list(rows)
        for metric, label, goal in (("fps", "frames per second", 25), ("first_frame_ms", "time to first frame, ms", 250)):
            ax = axes[i]
            i += 1
            vals = [rows[n][metric] for n in names]
            ax.barh(names, vals, color="#37a")
            ax.axvline(goal, color="#c44", ls="--", lw=1)
            ax.set_xlabel(f"{label} (goal {goal})")
            ax.set_title("main job end to end (CLI, 2 cores)")
            for y, v in enumerate(vals):
                ax.text(v, y, f" {v:.3g}", va="center", fontsize=8)
    if "resolution" in results:
        ax = axes[i]
        res = results["resolution"]
        ax.plot([r["resolution"] for r in res], [r["ms_per_frame_step"] for r in res], "o-")
        ax.set_yscale("log")
        ax.set_xlabel("resolution, px")
        ax.set_ylabel("denoiser ms per frame and step (log)")
        ax.set_title("time per frame vs resolution")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args) -> dict:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results: dict = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": args.threads}}
    for name in filter(None, args.configs.split(",")):
        if name == "demo":
            model = load_model(args.model)
            rows = bench_config("demo", model, args.seconds, args.threads, False, log)
        else:
            torch.manual_seed(0)
            model = LLIAModel(get_config(name)).eval().requires_grad_(False)
            rows = bench_config(name, model, args.seconds, args.threads, True, log)
            del model
        results[f"config:{name}"] = rows
        print(format_rows(name, rows), flush=True)
    if args.resolution:
        res = []
        for name in args.resolution.split(","):
            torch.manual_seed(0)
            m = load_model(args.model) if name == "demo" else LLIAModel(get_config(name)).eval().requires_grad_(False)
            r = time_calls(m, dataclasses.replace(LLIA_SAMPLER, steps=1, first_clip=4, clip_frames=4), 4, args.threads)
            res.append({"config": name, "resolution": m.config.resolution,
                        "ms_per_frame_step": 1000 * (r["seconds"]) / 4})
            del m
        results["resolution"] = res
        print(json.dumps(res, indent=1))
    if args.flops:
        results["flops"] = {name: flops_per_frame(name) for name in args.flops.split(",")}
        print(json.dumps(results["flops"], indent=1))
    if args.end_to_end:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            e2e = end_to_end_rows([int(v) for v in args.end_to_end.split(",")], args.model, Path(tmp), log,
                                  args.dtype)
        results["end_to_end"] = e2e
        print("| run | video | FPS | first frame | x crop FPS | x crop first frame |\n|---|---|---|---|---|---|")
        for name, r in e2e.items():
            print(f"| {name} | {r['width']}x{r['height']} | {r['fps']:.1f} | {r['first_frame_ms']:.0f} ms | "
                  f"{r['fps_x_crop']:.2f} | {r['first_frame_x_crop']:.2f} |", flush=True)
    if args.memory:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:  # the long audio and videos are not results
            mem = [peak_rss_mb(float(m), args.model, 1, Path(tmp)) for m in args.memory.split(",")]
        for m in mem:
            m["x_first"] = m["peak_rss_mb"] / mem[0]["peak_rss_mb"]
        results["memory"] = mem
        print(json.dumps(mem, indent=1))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float))
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return results


def add_args(p) -> None:
    p.add_argument("--configs", default="demo,sd15-384", help="comma list: demo (bundled weights) and/or sd15-384, "
                   "sd15-512 (random weights, composed from timed calls)")
    p.add_argument("--model", default="bundled", help="checkpoint for the demo rows")
    p.add_argument("--seconds", type=float, default=8.0, help="audio seconds per run")
    p.add_argument("--threads", type=int, default=2, help="threads of the baseline and of sequential rows")
    p.add_argument("--end-to-end", default="", help="comma list of portrait sizes for end-to-end CLI runs with "
                   "full-size output, e.g. 512,1024 (plus one crop-output run as their baseline)")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"),
                   help="with --end-to-end: the CLI's --dtype (auto: bf16 on CPUs with native bf16, else fp32)")
    p.add_argument("--memory", default="", help="comma list of audio minutes for the peak-memory runs, e.g. 1,10")
    p.add_argument("--resolution", default="", help="comma list of configs for time per frame vs resolution")
    p.add_argument("--flops", default="", help="comma list of configs to count FLOPs for")
    p.add_argument("--out", default="bench/results", help="writes OUT.json and OUT.png")
