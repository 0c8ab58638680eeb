"""Command line: ``python -m llia_core {generate,train,info}``.

``generate`` is the main job: portrait + audio -> talking-avatar mp4 with the audio muxed in,
streamed to disk clip by clip (memory stays flat for long audio).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from .errors import LLIAError

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_PORTRAIT = ASSETS / "portrait.png"
DEFAULT_AUDIO = ASSETS / "speech.wav"
DTYPES = ("fp32", "bf16", "fp16")
DEFAULT_HEAD_MOTION, DEFAULT_BLINK_RATE = 1.0, 15.0


def _dtype(name: str, device: str = "cpu"):
    """torch dtype for --dtype; "auto" is bf16 on CPUs with native bf16 (1.4x faster here), else fp32."""
    import torch

    if name == "auto":
        from .quantization import cpu_has_bf16

        name = "bf16" if str(device) == "cpu" and cpu_has_bf16() else "fp32"
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def add_generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--portrait", default=None, help="portrait image (default: the bundled portrait)")
    p.add_argument("--audio", default=None, help="speech audio file (default: the bundled speech)")
    p.add_argument("--out", default="avatar.mp4", help="output mp4 path")
    p.add_argument("--model", default="bundled", help="checkpoint path, ComfyUI models/llia name or HF repo id")
    p.add_argument("--download", action="store_true", help="allow downloading --model from Hugging Face")
    p.add_argument("--crop", default="auto", choices=("auto", "face", "whole"),
                   help="auto: the face from its landmarks (the whole image if none is found); face: the same, "
                        "no face is an error; whole: animate the centred square")
    p.add_argument("--face-scale", type=float, default=None, help="crop side / face size (1.8, the default: the model's own framing; "
                   "models that warp the mouth keep theirs)")
    add_expression_args(p)
    p.add_argument("--output", default="full", choices=("full", "crop"),
                   help="full: the portrait's own size, only the face animated; crop: the model's square crop")
    p.add_argument("--max-size", type=int, default=1024,
                   help="longest side of the full-size video in pixels (0 = the portrait's size, however large)")
    p.add_argument("--states", default="auto",
                   help="'auto' (from speech activity), a state name, or a timeline '0-3:speaking,3-end:idle'")
    p.add_argument("--sampler", default="consistency", choices=("consistency", "ddim", "euler"))
    p.add_argument("--steps", type=int, default=2, help="denoising steps per clip")
    p.add_argument("--guidance", type=float, default=1.0, help="audio guidance scale (1 = off)")
    p.add_argument("--reuse-features", default=True, action=argparse.BooleanOptionalAction,
                   help="consistency steps after the first reuse its deep UNet features (about 1.4x faster; "
                        "--no-reuse-features recomputes every step)")
    p.add_argument("--motion-frames", type=int, default=1,
                   help="last frames of a clip the next one sees (at most the model's; 2 carries a little more "
                        "motion across clip boundaries, ~6%% slower)")
    p.add_argument("--drift-guard", type=float, default=0.15,
                   help="long videos: colour/contrast drift allowed before motion frames are pulled back, in "
                        "reference standard deviations (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: model's)")
    p.add_argument("--first-clip", type=int, default=2, help="frames in the first clip (latency)")
    p.add_argument("--clip-frames", type=int, default=16, help="longest clip")
    p.add_argument("--start", type=float, default=0.0, help="audio start (s)")
    p.add_argument("--duration", type=float, default=None, help="audio duration to use (s)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=("auto",) + DTYPES,
                   help="auto: bf16 on CPUs with native bf16, else fp32")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--pipeline", default="auto", choices=("auto", "off", "threads"),
                   help="overlap denoising stages on two threads (auto: with the consistency sampler and >= 2 steps)")
    p.add_argument("--threads-per-stage", type=int, default=None, help="CPU threads per pipeline stage")
    p.add_argument("--share-cores", default=True, action=argparse.BooleanOptionalAction,
                   help="the pacing stage borrows the other's cores while it waits (float rounding then depends on "
                        "timing; --no-share-cores: ~10%% slower, runs repeat bit for bit)")
    p.add_argument("--distributed", action="store_true",
                   help="run as one stage of a torch.distributed pipeline (launch with torchrun; last rank writes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_expression_args(p: argparse.ArgumentParser) -> None:
    """The expression and motion controls, shared by generate and live."""
    from .portrait import DEFAULT_EXPRESSION, EXPRESSIONS

    p.add_argument("--expression", default=DEFAULT_EXPRESSION, choices=EXPRESSIONS,
                   help="the portrait's mouth before it is animated: neutral (closed, relaxed), as_photo, or "
                        "slight_smile (closed, corners up)")
    p.add_argument("--mouth-amplitude", type=float, default=1.0,
                   help="how far the mouth moves: 0 still, 1 as trained, 2 exaggerated")
    p.add_argument("--head-motion", type=float, default=DEFAULT_HEAD_MOTION,
                   help="head motion and brows from the speech: 0 still, 1 as learned from real talkers, 2 twice that")
    p.add_argument("--blink-rate", type=float, default=DEFAULT_BLINK_RATE, help="blinks per minute (0 = none)")
    p.add_argument("--teeth", default=True, action=argparse.BooleanOptionalAction,
                   help="draw the upper front teeth in an open mouth (--no-teeth: a plain dark opening)")


def motion_controls(args):
    from .portrait.face_motion import MotionControls

    return MotionControls(args.mouth_amplitude, args.head_motion, args.blink_rate, args.seed,
                          args.teeth).validate()


def build_states(spec: str, audio):
    from .states import STATE_NAMES, fixed_states, parse_timeline

    spec = (spec or "auto").strip()
    if spec == "auto":
        return None
    if spec.lower() in STATE_NAMES or ":" not in spec:
        return fixed_states(audio.num_frames, spec)
    return parse_timeline(spec, audio.num_frames, audio.fps)


def _clip_source(args, pipe, sampler):
    """(stream function, sampler, whether this process writes the video) for --pipeline/--distributed."""
    import os

    from .pipeline import clip_stream, pipelined_sampler

    if args.distributed:
        import torch.distributed as dist

        from .pipeline.distributed import stage_stream

        if "RANK" not in os.environ:
            raise LLIAError("--distributed needs torchrun (e.g. torchrun --nproc-per-node 2 -m llia_core generate "
                            "--distributed ...), which sets RANK and WORLD_SIZE")
        dist.init_process_group("nccl" if pipe.device.type == "cuda" else "gloo")
        last = dist.get_rank() == dist.get_world_size() - 1

        return (lambda *a: stage_stream(pipe, *a)), pipelined_sampler(sampler, dist.get_world_size()), last
    stream, sampler = clip_stream(pipe, sampler, args.pipeline, args.threads, args.threads_per_stage, args.share_cores)
    return stream, sampler, True


KERNEL_CACHE = "512"  # oneDNN kernels kept by a generate run (see run_generate)


def run_generate(args) -> dict:
    """The main job. Returns the timing report it prints."""
    import torch
    from tqdm import tqdm

    from .audio import encode_audio, window_settings
    from .checkpoints import load_model
    from .pipeline import LLIAPipeline, SamplerConfig
    from .pipeline.output import FrameRenderer, render_clips
    from .portrait import prepare_portrait

    # oneDNN caches up to 1024 compiled kernels, each holding its own reordered (bf16) weights, and
    # clip lengths vary (the first clips, the last one): 400 random clip shapes grew the process by
    # 570 MB with the default cache and stayed flat with 256 (3% slower over 150 s of audio, measured
    # with the session-5 model). With the mouth-paint model 256 is too few: the main job ran 13% slower
    # (23.7 vs 27.1 FPS in one process, 512 px output); 512 runs as fast as 1024 (26.0 vs 26.3).
    # oneDNN reads this once, at its first kernel, so it only applies when generate starts the process.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", KERNEL_CACHE)
    if args.threads:
        torch.set_num_threads(args.threads)
    # 1. Check and prepare every input before any heavy work
    portrait_path = args.portrait or DEFAULT_PORTRAIT
    if args.max_size < 0:
        raise LLIAError(f"--max-size must be 0 (no cap) or a number of pixels, not {args.max_size}")
    t_load = time.perf_counter()
    model = load_model(args.model, device=args.device, dtype=_dtype(args.dtype, args.device), allow_download=args.download)
    cfg = model.config
    fps = args.fps or cfg.fps
    a = cfg.audio
    audio = encode_audio(args.audio or DEFAULT_AUDIO, fps, start=args.start, duration=args.duration,
                         **window_settings(a), allow_download=args.download)
    model.prefetch_audio(audio)  # the phones decode while the portrait is prepared
    view, note = cfg.portrait_view(args.face_scale)
    portrait = prepare_portrait(portrait_path, cfg.resolution, mode=args.crop, view=view, expression=args.expression)
    if note:
        portrait.notes.append(note)
    renderer = FrameRenderer(portrait, args.output, args.max_size or None, motion_controls(args), fps,
                             head_model=model.head_model, speech=audio.waveform_for_video(),
                             painter=model.mouth_painter)
    for note in portrait.notes + renderer.notes:
        print(f"note: {note}", file=sys.stderr)
    states = build_states(args.states, audio)
    renderer.follow_states(0, states)
    sampler = SamplerConfig(sampler=args.sampler, steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
                            drift_guard=args.drift_guard, mouth_amplitude=args.mouth_amplitude,
                            first_clip=args.first_clip, clip_frames=args.clip_frames,
                            reuse_features=args.reuse_features, motion_frames=args.motion_frames)
    sampler.validate(cfg.max_clip_frames)
    pipe = LLIAPipeline(model, device=args.device, dtype=_dtype(args.dtype, args.device))
    stream, sampler, writes = _clip_source(args, pipe, sampler)
    if writes and not args.distributed:  # kernels picked and the reference cached before the clock starts
        pipe.warm_up(portrait, sampler, stream=stream)
    load_seconds = time.perf_counter() - t_load
    # 2. Generate clip by clip, composited into the portrait, straight into the mp4
    out = Path(args.out)
    if not writes:  # a distributed rank that only denoises
        for _ in stream(portrait, audio, states, sampler):
            pass
        return {}
    bar = tqdm(total=audio.num_frames, unit="frame", desc="generating", disable=args.quiet)
    # the writer trims or pads the audio to the video's length and reads it a few seconds at a time
    video = render_clips(stream(portrait, audio, states, sampler), renderer, total_frames=audio.num_frames,
                         mp4=out, fps=fps, audio=audio.audio.waveform, keep="none",
                         on_clip=lambda clip, last, done: bar.update(clip.frames.shape[0]))
    bar.close()
    width, height = video.size
    report = {"frames": video.frames_done, "seconds": round(video.seconds, 3), "fps": round(video.fps, 2),
              "first_frame_ms": round(video.first_frame_seconds * 1000, 1), "load_seconds": round(load_seconds, 2),
              "audio_seconds": round(audio.num_frames / fps, 3), "out": str(out), "width": width, "height": height}
    print(f"wrote {out}: {width}x{height}, {report['frames']} frames at {fps:g} fps ({report['audio_seconds']} s) | "
          f"generation {report['fps']} FPS | time to first frame {report['first_frame_ms']} ms | "
          f"model/inputs loaded in {report['load_seconds']} s")
    return report


def add_live_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--model", default="bundled")
    p.add_argument("--portrait", default=None, help="portrait image (default: the bundled portrait)")
    p.add_argument("--crop", default="auto", choices=("auto", "face", "whole"))
    add_expression_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="full", choices=("full", "crop"),
                   help="full: frames of the portrait's own size; crop: the model's square crop")
    p.add_argument("--max-size", type=int, default=1024, help="longest side of full-size frames (0 = no cap)")
    p.add_argument("--avatar-audio", default=None, help="a file played as the avatar's voice (stand-in for a TTS)")
    p.add_argument("--user-audio", default=None, help="a file played as the user's microphone")
    p.add_argument("--steps", type=int, default=1, help="consistency steps per clip (2 for a little more detail)")
    p.add_argument("--clip-frames", type=int, default=1, help="frames per clip (shorter = lower latency)")
    p.add_argument("--lead", type=float, default=0.03,
                   help="seconds before a frame is due that its clip starts (a clip must be made within it)")
    p.add_argument("--levels", default="full,half,quarter,warp",
                   help="levels the engine may run at, richest first: full = the denoiser on every clip, half / "
                        "quarter = on every 2nd / 4th, warp = the mouth model and the warp only; it picks by the "
                        "measured clip times so frames stay on time (full alone: every clip denoised, late or not)")
    p.add_argument("--adaptive-lead", action="store_true",
                   help="grow the lead to the time a clip takes: face in sync with the voice, more latency")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16", "int8"),
                   help="auto: bf16 on CPUs with native bf16, else fp32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl+C)")
    p.add_argument("--portrait-state", default=None, help=argparse.SUPPRESS)  # a host's prepared portrait (live/process.py)
    p.add_argument("--exit-with-stdin", action="store_true", help=argparse.SUPPRESS)  # stop when the host's pipe closes


def feed_file(push, path: str, chunk_seconds: float = 0.2, stop=None, loop: bool = False) -> None:
    """Push a file's audio in real-time chunks (a stand-in for a TTS or a microphone)."""
    from .audio import load_audio
    from .live.session import push_paced

    wave = load_audio(path).waveform.numpy()
    while push_paced(push, wave, chunk_seconds, stop) and loop:
        pass


def run_live(args) -> None:
    import threading

    from .checkpoints import load_model
    from .live import LiveAvatar, LiveServer
    from .pipeline import LLIAPipeline
    from .portrait import prepare_portrait

    model = load_model(args.model)
    cfg = model.config
    if args.portrait_state:  # prepared by a host (ComfyUI's Live View node)
        from .live.process import load_portrait_state

        portrait = load_portrait_state(args.portrait_state)
    else:
        portrait = prepare_portrait(args.portrait or DEFAULT_PORTRAIT, cfg.resolution, mode=args.crop,
                                    view=cfg.framing, expression=args.expression)
    for note in portrait.notes:
        print(f"note: {note}", file=sys.stderr)
    from .quantization import model_at_precision

    model, dtype = model_at_precision(model, args.dtype)
    avatar = LiveAvatar(LLIAPipeline(model, dtype=dtype), portrait, steps=args.steps, clip_frames=args.clip_frames,
                        lead=args.lead, adaptive_lead=args.adaptive_lead, output=args.output,
                        max_size=args.max_size or None, seed=args.seed, levels=args.levels,
                        motion=motion_controls(args))
    server = LiveServer(avatar, args.host, args.port).start(args.threads, generator=False)
    print(f"live avatar at {server.url}  (POST audio to {server.url}api/avatar-audio and "
          f"{server.url}api/user-audio; Ctrl+C stops)", flush=True)
    stop = threading.Event()
    feeders = [threading.Thread(target=feed_file, args=(push, path, 0.2, stop, True), daemon=True)
               for push, path in ((avatar.push_avatar_audio, args.avatar_audio), (avatar.push_user_audio, args.user_audio))
               if path]
    for f in feeders:
        f.start()
    if args.seconds is not None:
        threading.Timer(args.seconds, avatar.stop).start()
    if args.exit_with_stdin:
        from .live.process import exit_with_stdin

        exit_with_stdin(avatar.stop)
    try:
        avatar.run(args.threads)  # in the main thread: PyTorch runs this model faster here than in a new thread
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.stop()
        print(json.dumps(server.stats()), flush=True)


def add_convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-sd", required=True, metavar="PATH",
                   help="a diffusers Stable Diffusion folder (unet/, vae/), a single-file SD .safetensors "
                        "(original key names, e.g. from ComfyUI/models/checkpoints), or a Hugging Face repo id "
                        "(cache only, unless --allow-download)")
    p.add_argument("--out", required=True, help="the LLIA .safetensors to write")
    p.add_argument("--resolution", type=int, default=384, help="pixel size the model will generate (default 384)")
    p.add_argument("--name", default=None, help="config name stored in the file (default sd-RESOLUTION)")
    p.add_argument("--motion-adapter", default=None, metavar="PATH",
                   help="start the motion modules from an AnimateDiff MotionAdapter (diffusers folder) "
                        "instead of zero")
    p.add_argument("--allow-download", action="store_true", help="let hub ids download (off: local files and cache only)")
    p.add_argument("--dtype", default="fp16", choices=DTYPES, help="storage precision (loads back as fp32; default fp16)")
    p.add_argument("--audio-features", default="log-mel", choices=("log-mel", "whisper-tiny"),
                   help="what the audio encoder reads: log-mel (default) or a whisper-tiny encoder's states "
                        "(needs pip install 'llia[whisper]'; weights from --whisper, $LLIA_WHISPER or the hub cache)")
    p.add_argument("--whisper", default=None, metavar="PATH", help="a local Whisper checkpoint folder")


def run_convert(args) -> None:
    from .sd_conversion import convert_sd, describe_config
    from .checkpoints import read_config

    t0 = time.perf_counter()
    out = convert_sd(args.from_sd, args.out, resolution=args.resolution, name=args.name,
                     motion_adapter=args.motion_adapter, allow_download=args.allow_download, dtype=_dtype(args.dtype),
                     audio_features=args.audio_features, whisper=args.whisper)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s: "
          f"{describe_config(read_config(out))}")


def add_train_args(p: argparse.ArgumentParser) -> None:
    from .training.trainer import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if f.type in ("bool",) or isinstance(default, bool):
            p.add_argument(flag, default=default, action=argparse.BooleanOptionalAction)
        elif isinstance(default, int) and not isinstance(default, bool):
            p.add_argument(flag, type=int, default=default)
        elif isinstance(default, float):
            p.add_argument(flag, type=float, default=default)
        elif f.name in ("minutes",):
            p.add_argument(flag, type=float, default=default)
        elif f.name in ("max_clips", "threads", "stop_step"):
            p.add_argument(flag, type=int, default=default)
        else:
            p.add_argument(flag, default=default)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llia_core", description="LLIA talking-avatar engine")
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_args(sub.add_parser("generate", help="portrait + audio -> talking-avatar mp4"))
    add_train_args(sub.add_parser("train", help="train a model stage (mouth, head, base or distill)"))
    ev = sub.add_parser("eval", help="evaluation table on held-out identities")
    ev.add_argument("--model", default="bundled")
    ev.add_argument("--teacher", default=None, help="checkpoint for the teacher rows (default: --model)")
    ev.add_argument("--out", default="eval/report", help="writes OUT.md and OUT.json")
    ev.add_argument("--identities", type=int, default=6, help="held-out identities (4 clips each)")
    ev.add_argument("--seconds", type=float, default=3.0, help="seconds per evaluation clip")
    ev.add_argument("--settings", default=None, help="comma list of teacher-25,student-1,student-2,student-4")
    ev.add_argument("--drift-minutes", type=float, default=0.0, help="also measure drift over this many minutes")
    ev.add_argument("--threads", type=int, default=None)
    ev.add_argument("--real", default=None, help="a folder with talking/, photos/ and speech/ (e.g. ../shared/realfaces): "
                    "evaluate on real people instead (--val-videos, --val-photos)")
    ev.add_argument("--val-videos", default="hdtf_WDA_KatieHill_000,mimictalk_German_20s,styletalk_reagan_clip1",
                    help="with --real: comma list of talking/ videos (without suffix) the model never trained on")
    ev.add_argument("--val-photos", default="hallo_1,hallo_4,genface_000007,genface_015270,liveportrait_s3,"
                    "liveportrait_s9,dreamtalk_male_face,sadtalker_people_0", help="with --real: comma list of photos/")
    ev.add_argument("--real-seconds", type=float, default=10.0, help="with --real: seconds of each video")
    ev.add_argument("--realism-videos", default="grid/s2/pwij3p,grid/s3/sbia1a,grid/s5/lbax4n,grid/s10/bbab8n,"
                    "grid/s20/brbk7n,grid/s22/lbbc2a,grid/s23/lrwp9a,grid/s26/swiz3n,grid/s32/sbwe5n",
                    help="with --real: more videos of people the model never trained on (paths under --real, "
                    "without suffix; default one clip of each GRID speaker but s1) for the mouth-realism "
                    "measures only ('' for none)")
    from .portrait import DEFAULT_EXPRESSION, EXPRESSIONS

    ev.add_argument("--expression", default=DEFAULT_EXPRESSION, choices=EXPRESSIONS,
                    help="with --real: the reference expression template of each portrait")
    ev.add_argument("--figure", default=None, help="with --real: write the real-vs-generated figure here "
                    "(it shows real people: keep it out of the repository); with --controls: the templates figure; "
                    "with --head: the head motion drawn on the bundled portrait")
    ev.add_argument("--controls", action="store_true",
                    help="measure the expression templates and the motion controls (mouth amplitude, head motion, "
                         "blinks) on --portrait with --audio (default: the bundled ones)")
    ev.add_argument("--portrait", default=None, help="with --controls: the portrait (default: the bundled one)")
    ev.add_argument("--audio", default=None, help="with --controls: the speech (default: the bundled one)")
    ev.add_argument("--controls-seconds", type=float, default=10.0, help="with --controls: seconds per setting")
    ev.add_argument("--lipsync", default=None, metavar="TRACKS",
                    help="lip sync on people left out: leave-people-out folds of the mouth model over the face tracks "
                         "in TRACKS (training.data --videos DIR --out DATA --tracks-only), GRID's p/b/m onsets; with "
                         "--real also generated videos of those people and every voice on --val-photos")
    ev.add_argument("--head", default=None, metavar="TRACKS",
                    help="head motion on people left out: leave-people-out folds of the head-motion model over the "
                         "face tracks in TRACKS; with --real also generated videos of those people read back by the "
                         "face mesh")
    ev.add_argument("--folds", type=int, default=5, help="with --lipsync or --head: folds by person")
    ev.add_argument("--fold-steps", type=int, default=1500,
                    help="with --lipsync or --head: training steps of each fold's model")
    ev.add_argument("--video-seconds", type=float, default=10.0,
                    help="with --lipsync or --head, and --real: seconds of each generated video (0: none)")
    from .bench import add_args as add_bench_args

    add_bench_args(sub.add_parser("bench", help="speed/latency/memory benchmark vs a Hallo-style baseline"))
    live = sub.add_parser("live", help="serve a live avatar page (speaks, listens, idles in real time)")
    add_live_args(live)
    conv = sub.add_parser("convert", help="start an LLIA model from a Stable Diffusion 1.x/2.x checkpoint")
    add_convert_args(conv)
    info = sub.add_parser("info", help="describe a checkpoint")
    info.add_argument("model", nargs="?", default="bundled")
    args = parser.parse_args(argv)
    from .allocator import keep_freed_memory

    keep_freed_memory()  # freed tensors stay in the process: 1.4x per denoiser call on CPU (allocator.py)
    try:
        if args.command == "generate":
            run_generate(args)
        elif args.command == "train":
            from .training.trainer import TrainConfig, train

            fields = {f.name for f in dataclasses.fields(TrainConfig)}
            path = train(TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}))
            if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 writes
                print(f"wrote {path}")
        elif args.command == "eval" and args.controls:
            from .evaluation.controls import run_controls_eval

            run_controls_eval(args.model, args.out, portrait=args.portrait, audio=args.audio,
                              seconds=args.controls_seconds, figure=args.figure, threads=args.threads)
        elif args.command == "eval" and args.head:
            from .evaluation.head import run_head_eval

            run_head_eval(args.model, args.head, args.out, realfaces=args.real, folds=args.folds, steps=args.fold_steps,
                          video_seconds=args.video_seconds, threads=args.threads, figure=args.figure)
        elif args.command == "eval" and args.lipsync:
            from .evaluation.lipsync import run_lipsync_eval

            if args.real:  # the validation people's videos and photos first, then lip sync on everyone left out
                from .evaluation.real import run_real_eval

                run_real_eval(args.model, args.real, args.out, videos=args.val_videos.split(","),
                              photos=args.val_photos.split(","), seconds=args.real_seconds, figure=args.figure,
                              threads=args.threads, expression=args.expression,
                              realism_videos=[v for v in args.realism_videos.split(",") if v])
            run_lipsync_eval(args.model, args.lipsync, args.out, realfaces=args.real, folds=args.folds,
                             steps=args.fold_steps, video_seconds=args.video_seconds,
                             photos=args.val_photos.split(",") if args.real else (),
                             live_people=tuple(args.val_videos.split(",")) if args.real else (), threads=args.threads,
                             out_suffix="_lipsync" if args.real else "")
        elif args.command == "eval" and args.real:
            from .evaluation.real import run_real_eval

            run_real_eval(args.model, args.real, args.out, videos=args.val_videos.split(","),
                          photos=args.val_photos.split(","), seconds=args.real_seconds, figure=args.figure,
                          threads=args.threads, expression=args.expression,
                          realism_videos=[v for v in args.realism_videos.split(",") if v])
        elif args.command == "eval":
            from .evaluation.run import run_eval

            run_eval(args.model, args.out, identities=args.identities, seconds=args.seconds,
                     settings=args.settings.split(",") if args.settings else None,
                     drift_minutes=args.drift_minutes, threads=args.threads, teacher=args.teacher)
        elif args.command == "bench":
            from .bench import main as bench_main

            bench_main(args)
        elif args.command == "live":
            run_live(args)
        elif args.command == "convert":
            run_convert(args)
        elif args.command == "info":
            from .checkpoints import describe, resolve_model_path

            print(describe(resolve_model_path(args.model)))
    except LLIAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
