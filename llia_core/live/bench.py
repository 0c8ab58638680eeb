"""``python -m llia_core.live.bench``: a scripted conversation against the live engine, in real time.

The avatar answers with espeak-ng speech (or the built-in synthesiser) pushed in 200 ms chunks
the way a streaming TTS would; between answers the "user" talks (their chunks go to the user
input) and there are silences. Reports, from one run: latency from a voice chunk arriving to its
first frame being shown (the page shows a frame at its media time, in sync with the audio; with
``--browser`` also as the page itself reports it),
latency from the user starting to talk to the avatar visibly listening, frames dropped (and, after
the first 5 s, when the headless browser itself starts on the same cores: dropped, ready late, and
never shown by the page), the engine's level (``levels.py``) and whether delay grows (first vs last
minute). ``--browser`` also opens the page in headless Chromium and reports the page's own display
lag. The plot: lag per frame, latency per voice chunk, the level over time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np


def conversation(stop: threading.Event, avatar, rng: np.random.Generator, chunk: float = 0.2) -> None:
    from .session import push_paced

    from ..training.data.speech import have_espeak, espeak_speech, random_sentence, random_voice, synth_speech

    def say(push, wave):
        push_paced(push, wave, chunk, stop)

    def utterance(seconds):
        if have_espeak():
            voice, speed, pitch = random_voice(rng)
            return espeak_speech(random_sentence(rng, int(seconds * 2.5)), voice, speed, pitch, rng)
        return synth_speech(seconds, rng)

    while not stop.is_set():
        say(avatar.push_avatar_audio, utterance(3.0))  # the avatar answers
        stop.wait(1.0)
        say(avatar.push_user_audio, utterance(2.0))  # the user talks
        stop.wait(1.5)  # nobody talks: idle


def minute_stats(avatar, minute: int) -> dict:
    lo, hi = 60 * minute, 60 * (minute + 1)
    lag = [l for pts, l in avatar.stats.lag if lo <= pts < hi]
    shown = [c.first_frame_shown - c.received for c in avatar.stats.chunks
             if c.first_frame_shown and lo <= c.start < hi]
    page = [c.page_shown - c.received for c in avatar.stats.chunks if c.page_shown and lo <= c.start < hi]

    def ms(xs):
        return None if not xs else round(1000 * float(np.median(xs)), 1)

    return {"minute": minute + 1, "frames": len(lag), "ready_minus_due_ms_median": ms(lag),
            "chunk_to_shown_ms_median": ms(shown), "chunk_to_page_shown_ms_median": ms(page)}


SETTLE_SECONDS = 5.0  # the start, when the headless browser itself starts up on the same cores


def main(argv: list[str] | None = None) -> dict:
    from ..allocator import keep_freed_memory

    keep_freed_memory()  # as the CLI's live command does
    p = argparse.ArgumentParser(prog="python -m llia_core.live.bench")
    p.add_argument("--model", default="bundled")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--clip-frames", type=int, default=1)
    p.add_argument("--lead", type=float, default=0.03)
    p.add_argument("--adaptive-lead", action="store_true", help="grow --lead to the measured clip time")
    p.add_argument("--levels", default="full,half,quarter,warp", help="levels the engine may run at (live/levels.py)")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eager", action="store_true", help="run the denoiser eagerly (no traced fast path)")
    p.add_argument("--browser", action="store_true", help="also open the page in headless Chromium")
    p.add_argument("--out", default="bench/live")
    p.add_argument("--portrait", default=None, help="portrait (default: the bundled 512 px photo)")
    p.add_argument("--output", default="full", choices=("full", "crop"))
    p.add_argument("--max-size", type=int, default=1024)
    args = p.parse_args(argv)

    from ..checkpoints import load_model
    from ..pipeline import LLIAPipeline
    from ..portrait import prepare_portrait
    from .server import LiveServer
    from .session import LiveAvatar

    from ..quantization import model_at_precision

    model, dtype = model_at_precision(load_model(args.model), args.dtype)
    portrait = prepare_portrait(args.portrait or Path(__file__).parents[1] / "assets" / "portrait.png",
                                model.config.resolution, view=model.config.framing)
    avatar = LiveAvatar(LLIAPipeline(model, dtype=dtype), portrait, steps=args.steps, clip_frames=args.clip_frames,
                        lead=args.lead, adaptive_lead=args.adaptive_lead, frozen=not args.eager, output=args.output,
                        max_size=args.max_size or None, levels=args.levels)
    # generating for nobody on purpose: the numbers are the engine's, with or without the page
    server = LiveServer(avatar, "127.0.0.1", 0, pause_unwatched=False).start(args.threads, generator=False)
    browser = None
    if args.browser and shutil.which("chromium"):
        browser = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio",
                                    f"--user-data-dir={tempfile.mkdtemp()}", server.url],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    talker = threading.Thread(target=conversation, args=(stop, avatar, np.random.default_rng(0)), daemon=True)
    talker.start()
    timer = threading.Timer(args.minutes * 60, avatar.stop)
    timer.start()
    try:
        avatar.run(args.threads)  # the generator runs in the main thread (faster than in a new one)
    finally:
        stop.set()
        talker.join(5)
        stats = server.stats()
        if browser is not None:
            browser.kill()
        server.stop()
    minutes = int(args.minutes)
    result = {"settings": vars(args), "summary": stats, "audio_delay_ms": round(1000 * avatar.audio_delay, 1),
              "per_minute": [minute_stats(avatar, m) for m in range(max(1, minutes))]}
    settled = [n for t, n in avatar.stats.drops if t >= SETTLE_SECONDS]
    made = [round(pts * avatar.fps - 0.5) for pts, _ in avatar.stats.lag if SETTLE_SECONDS <= pts < avatar.now() - 1]
    late = [lag for pts, lag in avatar.stats.lag if pts >= SETTLE_SECONDS]
    result["dropped_after_start"] = {"seconds": SETTLE_SECONDS, "dropped": int(sum(settled)), "frames": len(made),
                                     "late": int(sum(1 for lag in late if lag > 0)),
                                     "late_ms_p99": round(1000 * float(np.percentile(late, 99)), 1) if late else None}
    if browser is not None:  # frames made but never shown by the page (it skips those that came too late)
        shown = set(server.shown_frames)
        result["dropped_after_start"]["not_shown_by_page"] = sum(1 for i in made if i not in shown)
    first, last = result["per_minute"][0], result["per_minute"][-1]
    result["delay_growth_ms"] = (None if first["ready_minus_due_ms_median"] is None
                                 or last["ready_minus_due_ms_median"] is None
                                 else round(last["ready_minus_due_ms_median"] - first["ready_minus_due_ms_median"], 1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    _plot(avatar, out.with_suffix(".png"))
    print(json.dumps(result, indent=1))
    return result


def _plot(avatar, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    pts = np.array([p for p, _ in avatar.stats.lag])
    lag = np.array([1000 * l for _, l in avatar.stats.lag])
    axes[0].plot(pts / 60, lag, ",", alpha=0.5)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_xlabel("session minute")
    axes[0].set_ylabel("frame ready minus due, ms (<0 = early)")
    axes[0].set_title("no growing delay")
    shown = [(c.start / 60, 1000 * (c.first_frame_shown - c.received)) for c in avatar.stats.chunks if c.first_frame_shown]
    if shown:
        x, y = zip(*shown)
        axes[1].plot(x, y, ".", ms=3, label="engine (frame due or ready)")
    page = [(c.start / 60, 1000 * (c.page_shown - c.received)) for c in avatar.stats.chunks if c.page_shown]
    if page:
        x, y = zip(*page)
        axes[1].plot(x, y, ".", ms=3, label="reported shown by the page")
    axes[1].axhline(200, color="r", lw=0.8, ls="--", label="200 ms goal")
    axes[1].set_xlabel("session minute")
    axes[1].set_ylabel("voice chunk in -> first frame shown, ms")
    axes[1].legend()
    # the engine's level over time, and where it had to skip frames
    from .levels import LEVEL_NAMES

    governor = avatar.governor
    history = governor.history + [(avatar.now(), governor.level.name)]
    t = [h[0] / 60 for h in history]
    y = [LEVEL_NAMES.index(h[1]) for h in history]
    axes[2].step(t, y, where="post", label="level")
    drops = [(pts / 60, LEVEL_NAMES.index("warp") + 0.3) for pts, _ in avatar.stats.drops]
    if drops:
        x, yd = zip(*drops)
        axes[2].plot(x, yd, "rv", ms=4, label="frames skipped")
    axes[2].set_yticks(range(len(LEVEL_NAMES)), LEVEL_NAMES)
    axes[2].invert_yaxis()
    axes[2].set_xlabel("session minute")
    axes[2].set_title("engine level (degrade before dropping)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
