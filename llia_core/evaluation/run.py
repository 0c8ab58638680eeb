"""``python -m llia_core eval``: the evaluation table for a checkpoint."""

from __future__ import annotations

import time

import torch

from ..checkpoints import load_model
from ..pipeline import LLIAPipeline
from ..training.data.identity import split_of
from ..training.data.render import mouth_box
from .evaluate import (SAMPLER_SETTINGS, drift, evaluate_setting, format_table, ground_truth_scores, make_eval_clips,
                       speech_vs_silence, write_report)


def run_eval(model: str, out: str, *, identities: int = 6, seconds: float = 3.0, settings: list[str] | None = None,
             drift_minutes: float = 0.0, threads: int | None = None, seed: int = 1000,
             teacher: str | None = None) -> dict:
    """Score ``model`` (and the multi-step teacher rows with ``teacher`` if given) on held-out identities."""
    if threads:
        torch.set_num_threads(threads)
    m = load_model(model)
    pipe = LLIAPipeline(m)
    r = m.config.resolution
    test_ids = [i for i in range(0, 100000) if split_of(i) == "test"][:identities]
    kinds = ["speaking", "listening", "idle", "switch"]
    t0 = time.perf_counter()
    clips = make_eval_clips(test_ids, kinds, seconds, r, m.config.fps, seed)
    box = mouth_box(r)
    rows = {}
    teacher_pipe = LLIAPipeline(load_model(teacher)) if teacher else pipe
    for name in settings or list(SAMPLER_SETTINGS):
        use = teacher_pipe if name.startswith("teacher") else pipe
        rows[name] = evaluate_setting(use, clips, SAMPLER_SETTINGS[name], box)
        print(f"{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in rows[name].items()), flush=True)
    extra = {"identities": test_ids, "clips": len(clips), "seconds_per_clip": seconds, "model": str(model),
             "teacher": str(teacher or model), **ground_truth_scores(clips, box)}
    from ..training.data.speech import have_espeak, speech_with_pauses

    import numpy as np

    wave = torch.as_tensor(speech_with_pauses(12.0, np.random.default_rng(seed)))
    extra.update(speech_vs_silence(pipe, clips[0], wave, box, SAMPLER_SETTINGS["student-2"]))
    extra["speech_source"] = "espeak-ng" if have_espeak() else "built-in synthesiser"
    if drift_minutes > 0:
        extra.update(drift(pipe, clips[0], drift_minutes, SAMPLER_SETTINGS["student-2"], box, m.config.fps))
    extra["eval_seconds"] = round(time.perf_counter() - t0, 1)
    write_report(out, rows, extra)
    print(format_table(rows))
    for k, v in extra.items():
        print(f"{k}: {v}")
    return {"settings": rows, **extra}
