"""Two pipeline stages sharing a CPU's cores (llia_core/pipeline/core_sharing.py)."""

from __future__ import annotations

import threading

import pytest
import torch

from llia_core.pipeline import core_sharing
from llia_core.pipeline.core_sharing import CoreSharing, use_threads


def _in_thread(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _join(t, out, timeout=5.0):
    """The thread's return value; its exception re-raised here; a thread still running after ``timeout``
    fails the test instead of hanging it."""
    t.join(timeout)
    assert not t.is_alive(), "the thread did not finish: a stage is stuck waiting for its cores"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_thread_counts_are_per_thread():
    before = torch.get_num_threads()
    barrier = threading.Barrier(2)

    def with_threads(n):
        def fn():
            use_threads(n)
            barrier.wait()
            torch.ones(64, 64) @ torch.ones(64, 64)  # a parallel op must not reset it either
            barrier.wait()
            return torch.get_num_threads()
        return fn

    (a, out_a), (b, out_b) = _in_thread(with_threads(2)), _in_thread(with_threads(1))
    assert (_join(a, out_a), _join(b, out_b)) == (2, 1)
    assert torch.get_num_threads() == before


def test_lead_borrows_while_lag_waits_and_returns_before_lag_computes():
    cores = CoreSharing(1, 1)
    seen = []
    go, stepped = threading.Event(), threading.Event()

    def lead():
        cores.start_lead()
        for _ in range(3):  # module boundaries of a clip, driven by the test
            go.wait(5)
            go.clear()
            cores.boundary()
            seen.append(torch.get_num_threads())
            stepped.set()
        cores.give_back()
        return torch.get_num_threads()

    lead_thread, lead_out = _in_thread(lead)
    cores.start_lag()
    waiting = cores.waiting()
    waiting.__enter__()  # stage 1 waits for a clip
    go.set(), stepped.wait(5), stepped.clear()
    assert seen == [2] and cores.borrows == 1

    done = threading.Event()
    lag_thread, lag_out = _in_thread(lambda: (waiting.__exit__(None, None, None), done.set()))
    assert not done.wait(0.3), "stage 1 went on computing while stage 0 still had its cores"
    go.set(), stepped.wait(5), stepped.clear()  # stage 0's next boundary returns them
    assert done.wait(5) and seen == [2, 1]
    _join(lag_thread, lag_out)
    go.set()
    assert _join(lead_thread, lead_out) == 1 and seen == [2, 1, 1]


def test_give_back_releases_a_waiting_lag_without_another_boundary():
    cores = CoreSharing(1, 1)
    cores.start_lag()
    borrowed = threading.Event()

    def lead():
        cores.start_lead()
        cores.boundary()
        borrowed.set()
        go.wait(5)
        cores.give_back()  # e.g. stage 0 failed or finished mid-clip

    go = threading.Event()

    def lag():  # stage 1 waits in its own thread: if give_back failed, the test fails instead of hanging
        with cores.waiting():
            t, out = _in_thread(lead)
            assert borrowed.wait(5) and cores.borrows == 1
            go.set()
        return _join(t, out)

    lag_thread, lag_out = _in_thread(lag)
    _join(lag_thread, lag_out, timeout=10)


def test_no_lending_keeps_each_stage_on_its_own_threads():
    cores = CoreSharing(1, 1, lend=False)

    def lead():
        cores.start_lead()
        cores.boundary()
        return torch.get_num_threads()

    with cores.waiting():
        t, out = _in_thread(lead)
        value = _join(t, out)
    assert value == 1 and cores.borrows == 0


def test_pipelined_run_lends_cores_and_restores_the_callers_threads(monkeypatch, tiny_model):
    import numpy as np

    from llia_core.pipeline import LLIAPipeline, PipelinedLLIA, SamplerConfig, pipelined_sampler
    from llia_core.portrait import prepare_portrait
    from tests.test_pipeline import _audio

    pipe = LLIAPipeline(tiny_model)
    portrait = prepare_portrait(np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8), 32,
                                mode="whole")
    made = []
    real = core_sharing.CoreSharing

    def record(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    import llia_core.pipeline.pipelined as pipelined
    monkeypatch.setattr(pipelined, "CoreSharing", record)
    lag_threads = []  # stage 1's thread count per clip (stage 1 runs in the caller's thread)
    advance = pipe.advance

    def recorded(job, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            lag_threads.append(torch.get_num_threads())
        return advance(job, *args, **kwargs)

    monkeypatch.setattr(pipe, "advance", recorded)
    before = torch.get_num_threads()
    audio = _audio(1.3, 25, pipe.config)
    sampler = pipelined_sampler(SamplerConfig(steps=2, first_clip=1, seed=3))
    shared = PipelinedLLIA(pipe, threads_per_stage=1).generate(portrait, audio, sampler=sampler)
    lent_to_lag, lag_threads[:] = list(lag_threads), []
    alone = PipelinedLLIA(pipe, threads_per_stage=1, share_cores=False).generate(portrait, audio, sampler=sampler)
    assert torch.get_num_threads() == before
    assert made[0].lend and not made[1].lend and made[1].borrows == 0
    # once stage 0 is done, the last clip gets both cores; without lending it keeps its own
    assert len(lent_to_lag) >= 3 and set(lent_to_lag[:-1]) == {1} and lent_to_lag[-1] == 2, lent_to_lag
    assert set(lag_threads) == {1}, lag_threads
    assert torch.allclose(shared.frames, alone.frames, atol=1e-5)


@pytest.mark.parametrize("flag, lends", [([], True), (["--no-share-cores"], False)])
def test_command_line_chooses_whether_stages_share_cores(monkeypatch, tiny_model, flag, lends):
    import argparse

    import cv2
    import numpy as np

    import llia_core.pipeline.pipelined as pipelined
    from llia_core.cli import _clip_source, add_generate_args
    from llia_core.pipeline import LLIAPipeline, SamplerConfig
    from llia_core.portrait import prepare_portrait
    from tests.test_pipeline import _audio

    parser = argparse.ArgumentParser()
    add_generate_args(parser)
    args = parser.parse_args(["--pipeline", "threads", "--threads", "2", *flag])
    made = []
    real = core_sharing.CoreSharing
    monkeypatch.setattr(pipelined, "CoreSharing", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    pipe = LLIAPipeline(tiny_model)
    portrait = prepare_portrait(np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8), 32,
                                mode="whole")
    stream, sampler, writes = _clip_source(args, pipe, SamplerConfig(steps=2, first_clip=1, seed=3))
    host_cv2 = cv2.getNumThreads()
    cv2.setNumThreads(2)
    clips, cv2_threads = [], []
    try:
        for clip in stream(portrait, _audio(0.6, 25, pipe.config), None, sampler):
            clips.append(clip)
            cv2_threads.append(cv2.getNumThreads())  # where the caller pastes each clip back
        after = cv2.getNumThreads()
    finally:
        cv2.setNumThreads(host_cv2)
    assert writes and len(clips) >= 2
    assert len(made) == 1 and made[0].lend is lends
    # OpenCV's pool stays off the other stage's core while the stages run, and is restored after
    assert set(cv2_threads) == {1} and after == 2
