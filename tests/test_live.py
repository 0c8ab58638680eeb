"""Live mode: the engine's states, timestamps and latency accounting; the server over loopback; the page in Chromium."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf
import torch

from llia_core.errors import AudioError
from llia_core.live import LiveAvatar, LiveServer, decode_audio_body, parse_message
from llia_core.pipeline import LLIAPipeline
from llia_core.states import IDLE, LISTENING, SPEAKING


def voice(seconds: float, sr: int = 16000, f0: float = 140.0) -> np.ndarray:
    """A voiced, speech-band harmonic tone (periodic, so the activity detector calls it speech)."""
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    return (0.25 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture()
def avatar(tiny_model):
    from llia_core.portrait import prepare_portrait

    rng = np.random.default_rng(3)
    portrait = prepare_portrait(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), 32, mode="whole")
    return LiveAvatar(LLIAPipeline(tiny_model), portrait, steps=2, clip_frames=2, lead=0.1)


def run_until(avatar, media_time):
    frames = []
    while not frames or frames[-1].pts < media_time:
        wait = (avatar.next_frame + 0.5) / avatar.fps - avatar.lead - avatar.now()
        if wait > 0:
            time.sleep(wait)
        frames += avatar.step()
    return frames


def test_states_follow_who_is_talking_and_frames_keep_the_clock(avatar):
    frames = run_until(avatar, 0.3)
    assert {f.state for f in frames} == {IDLE}
    event = avatar.push_avatar_audio(voice(0.6), 16000)
    assert event.start >= avatar.now() + avatar.lead  # plays once the face can follow it
    frames += run_until(avatar, event.start + 0.8)
    during = [f for f in frames if event.start + 0.1 <= f.pts <= event.start + 0.5]
    assert during and all(f.state == SPEAKING for f in during)
    after = [f for f in frames if f.pts > event.start + 0.75]
    assert after and all(f.state == IDLE for f in after)
    assert avatar.push_user_audio(voice(0.3, 48000, 200.0), 48000)  # the user talks (any sample rate)
    frames += run_until(avatar, frames[-1].pts + 0.3)
    assert LISTENING in {f.state for f in frames[-6:]}
    assert not avatar.push_user_audio(np.zeros(4800, np.float32), 16000)  # silence is not speech
    idx = [f.index for f in frames]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert all(abs(f.pts - (f.index + 0.5) / avatar.fps) < 1e-9 for f in frames)
    s = avatar.stats.summary()
    assert s["frames"] == len(frames) and s["latency_shown_ms_median"] is not None
    # shown latency is the audio delay (the browser shows a frame at its pts) unless generation was late
    assert s["latency_shown_ms_median"] >= 1000 * (avatar.audio_delay - 0.05)
    assert s["listen_switch_ms_median"] is not None and s["listen_switch_ms_median"] < 1500


def test_page_reports_date_a_voice_chunk_by_the_first_of_its_frames_the_page_showed(avatar):
    run_until(avatar, 0.2)
    first = avatar.push_avatar_audio(voice(0.4), 16000)
    frames = run_until(avatar, first.start + 0.6)
    second = avatar.push_avatar_audio(voice(0.4), 16000)
    frames += run_until(avatar, second.start + 0.6)
    assert first.first_frame_index is not None and second.first_frame_index is not None
    k = first.first_frame_index
    avatar.page_showed(k - 1, 0.0)  # an earlier (silent) frame dates nothing
    assert first.page_shown is None
    avatar.page_showed(k + 1, 30.0)  # the page skipped frame k: the next one it showed counts, with its lag
    assert first.page_shown == pytest.approx(avatar.t0 + (k + 1.5) / avatar.fps + 0.030)
    past_end = int((second.start + second.duration) * avatar.fps) + 2
    avatar.page_showed(past_end, 0.0)  # none of the second chunk's frames was shown: no date for it
    assert second.page_shown is None
    s = avatar.stats.summary()
    assert s["page_chunks"] == 1
    assert s["latency_page_ms_median"] == pytest.approx(1000 * (first.page_shown - first.received), abs=0.1)


def test_the_lead_grows_to_the_clip_time_and_the_voice_never_lands_in_audio_already_read(avatar):
    assert avatar.lead == pytest.approx(0.1) and not avatar.adaptive_lead  # off by default
    avatar.adaptive_lead = True
    base_delay = avatar.audio_delay
    run_until(avatar, 0.6)  # enough clips (at least 5) for the lead to adapt to what they took
    recent = list(avatar.stats.clip_seconds)[-40:]
    assert len(recent) >= 5
    want = min(avatar.MAX_LEAD, max(0.1, float(np.percentile(recent, 90)) + 0.005))
    assert avatar.lead == pytest.approx(want)  # whatever this machine's clips took
    avatar.stats.clip_seconds.extend([0.3] * 40)  # clips now take 300 ms (a slow, busy machine)
    avatar._adapt_lead()
    assert avatar.lead == pytest.approx(0.305) and avatar.audio_delay == pytest.approx(base_delay + 0.205)
    frames = run_until(avatar, avatar.now() + 0.5)
    read_until = frames[-1].pts + avatar.lookahead
    avatar.stats.clip_seconds.extend([0.0] * 40)  # fast again: the lead shrinks back to its least ...
    avatar._adapt_lead()
    assert avatar.lead == pytest.approx(0.1)
    event = avatar.push_avatar_audio(voice(0.2), 16000)
    # ... but new voice still starts after the audio the frames made with the long lead have read
    assert event.start > read_until


def test_a_slow_machine_drops_frames_instead_of_piling_up_delay(avatar):
    run_until(avatar, 0.1)
    time.sleep(0.8)  # the generator stalls
    stalled_until = avatar.now()
    frames = avatar.step()
    assert avatar.stats.dropped >= 15
    # the next clip starts not 0.8 s behind, nor at the clock (it would be shown a clip's time late,
    # behind its sound), but at the newest frame whose audio is in: ``lead`` ahead of the clock.
    # Measured against the clock when the step began, so a busy machine's generation time does not count
    assert frames[0].pts >= stalled_until + avatar.lead - 1.0 / avatar.fps
    assert frames[0].pts <= avatar.now() + avatar.lead  # and never ahead of its audio


def test_bad_audio_chunks_get_clear_errors(avatar):
    with pytest.raises(AudioError, match="empty"):
        avatar.push_avatar_audio(np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        avatar.push_user_audio(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioError, match="format"):
        decode_audio_body(b"\x00\x01", {"format": "mp3"})
    with pytest.raises(AudioError, match="sample_rate"):
        decode_audio_body(b"\x00\x01", {"sample_rate": "fast"})
    with pytest.raises(AudioError, match="WAV"):
        decode_audio_body(b"RIFF0000WAVEjunk", {})
    wave, sr = decode_audio_body((np.ones(4, "<i2") * 16384).tobytes(), {"sample_rate": "22050"})
    assert sr == 22050 and np.allclose(wave, 0.5)


def _post(url, body: bytes) -> dict:
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return {"status": e.code, **json.loads(e.read())}


def _wav(wave, sr=16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV")
    return buf.getvalue()


def test_server_on_loopback_streams_states_and_timestamps(avatar):
    import asyncio

    import aiohttp

    server = LiveServer(avatar, "127.0.0.1", 0).start(threads=1)
    try:
        assert urllib.request.urlopen(server.url, timeout=10).read().count(b"<canvas") == 1
        bad = _post(server.url + "api/avatar-audio", b"RIFFjunk")
        assert bad["status"] == 400 and "WAV" in bad["error"]

        async def client():
            seen = []
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(server.url + "ws") as ws:
                    hello = parse_message((await ws.receive()).data)
                    assert hello["type"] == "hello" and hello["fps"] == 25
                    await ws.send_str(json.dumps({"type": "ping", "t": 12.5}))  # the page's clock sync
                    while (pong := parse_message((await ws.receive(timeout=5)).data))["type"] != "pong":
                        pass
                    assert pong["t"] == 12.5 and pong["media_now"] >= hello["media_now"]
                    t_end = time.perf_counter() + 3.0
                    pushed = listened = False
                    while time.perf_counter() < t_end:
                        msg = parse_message((await ws.receive(timeout=5)).data)
                        if msg["type"] == "frame":
                            seen.append(msg)
                            await ws.send_str(json.dumps({"type": "shown", "index": msg["index"], "lag_ms": 0.0}))
                        if len(seen) == 10 and not pushed:
                            pushed = True
                            r = await (await session.post(server.url + "api/avatar-audio", data=_wav(voice(0.8)))).json()
                            assert r["start"] > hello["media_now"] and r["duration"] == pytest.approx(0.8)
                        if len(seen) == 50 and not listened:
                            listened = True
                            pcm = (voice(0.4) * 32767).astype("<i2").tobytes()
                            await ws.send_bytes(pcm)  # the page's microphone path
            return seen

        frames = asyncio.run(client())
        states = [f["state"] for f in frames]
        assert states[0] == "idle" and "speaking" in states and "listening" in states
        assert states.index("speaking") < states.index("listening")
        import cv2  # frames travel as binary JPEG messages: they decode at the portrait's own size

        first = cv2.imdecode(np.frombuffer(frames[0]["jpeg"], np.uint8), cv2.IMREAD_COLOR)
        assert first.shape == (40, 40, 3)
        speaking = cv2.imdecode(np.frombuffer(frames[states.index("speaking") + 3]["jpeg"], np.uint8), cv2.IMREAD_COLOR)
        assert speaking.shape == first.shape and np.abs(speaking.astype(int) - first).mean() > 0.5
        pts = [f["pts"] for f in frames]
        assert all(b > a for a, b in zip(pts, pts[1:]))
        stats = json.loads(urllib.request.urlopen(server.url + "api/stats", timeout=10).read())
        assert stats["shown_reports"] >= 10 and stats["latency_shown_ms_median"] is not None
        # the page's own reports date the voice's first frame: never before its audio plays
        assert stats["page_chunks"] == 1
        assert stats["latency_page_ms_median"] >= 1000 * (avatar.audio_delay - 0.05)
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium package is not installed")
def test_headless_chromium_shows_frames(avatar, tmp_path):
    server = LiveServer(avatar, "127.0.0.1", 0).start(threads=1)
    browser = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio",
                                f"--user-data-dir={tmp_path}", server.url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        stats = {}
        while time.time() < deadline:
            stats = server.stats()
            if stats["shown_reports"] >= 20:
                break
            time.sleep(0.5)
        assert stats["shown_reports"] >= 20, stats
        assert stats["viewers"] == 1
        # frames are drawn at the refresh nearest their time: up to half a refresh (8.3 ms at 60 Hz) early
        assert stats["browser_lag_ms_median"] is not None and stats["browser_lag_ms_median"] >= -9
    finally:
        browser.kill()
        browser.wait()
        server.stop()


def test_frozen_live_engine_draws_the_eager_frames(tiny_model):
    """The traced fast path (default) and the eager model give the same clips for the same inputs."""
    from llia_core.portrait import prepare_portrait

    portrait = prepare_portrait(np.random.default_rng(5).integers(0, 255, (40, 40, 3), dtype=np.uint8), 32,
                                mode="whole")
    pipe = LLIAPipeline(tiny_model)
    fast = LiveAvatar(pipe, portrait, steps=2, clip_frames=2)
    eager = LiveAvatar(pipe, portrait, steps=2, clip_frames=2, frozen=False)
    assert pipe.frozen_limit == 0 and len(fast.pipe._frozen) == 2  # traced before the clock started
    wave = voice(1.0)
    motions = [None, None]
    for start in (0, 2, 4):
        outs = []
        for i, av in enumerate((fast, eager)):
            m = 0 if motions[i] is None else motions[i].shape[2]
            av.push_avatar_audio(wave) if start == 0 else None
            windows, mouth, speech = eager._clip_inputs(start, 2, m)  # the same audio for both
            states = torch.full((m + 2,), SPEAKING, dtype=torch.long)
            images, motions[i] = av._generate(start, 2, windows, mouth, speech, states, motions[i])
            outs.append(images)
        assert np.abs(outs[0].astype(int) - outs[1].astype(int)).max() <= 1


def test_user_audio_is_checked_on_the_generator_thread(avatar, monkeypatch):
    """PyTorch work from a second thread slows the generator's OpenMP team down 2x, so while the
    generator runs, the user's chunks are checked between its clips, and the caller gets the answer."""
    threads = []
    real = avatar._user_speech

    def spy(*args, **kwargs):
        threads.append(__import__("threading").get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(avatar, "_user_speech", spy)
    assert avatar.push_user_audio(voice(0.2)) is True  # no generator yet: checked right here
    caller = __import__("threading").get_ident()
    assert threads == [caller]
    avatar.start(threads=1)
    try:
        time.sleep(0.3)
        assert avatar.push_user_audio(voice(0.2)) is True
        assert avatar.push_user_audio(np.zeros(3200, np.float32)) is False
        generator = avatar._thread.ident
        assert threads[1:] == [generator, generator]
        # the user counts as speaking from when the chunk arrived, not when it was checked
        assert avatar._user_until > avatar.now()
    finally:
        avatar.stop()
    assert avatar.push_user_audio(voice(0.2)) is True and threads[-1] == caller


def test_without_a_page_the_engine_sleeps_and_resumes_at_the_clock_when_one_connects(avatar):
    """No viewer: no frames are made (the paused frames are counted); a viewer joins: frames come again,
    starting at the media clock, not where the engine paused (no backlog to replay)."""
    import asyncio

    import aiohttp

    server = LiveServer(avatar, "127.0.0.1", 0).start(threads=1)
    try:
        time.sleep(0.3)
        f0 = avatar.stats.frames
        time.sleep(1.5)
        assert server.stats()["paused"] and avatar.stats.frames == f0
        r = _post(server.url + "api/avatar-audio", _wav(voice(0.5)))
        assert "no page is connected" in r["note"] and r["duration"] == pytest.approx(0.5)

        async def watch():
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(server.url + "ws") as ws:
                    await ws.receive()  # hello
                    joined = avatar.now()
                    t_end = time.perf_counter() + 1.5
                    while time.perf_counter() < t_end:
                        msg = parse_message((await ws.receive(timeout=5)).data)
                        if msg["type"] == "frame":
                            return joined, msg["pts"]
            return joined, None

        joined, first_pts = asyncio.run(watch())
        assert first_pts is not None
        assert first_pts >= joined - avatar.clip_frames / avatar.fps  # at the clock, not the paused backlog
        stats = server.stats()
        assert stats["paused_frames"] > 0 and stats["frames"] > f0
    finally:
        server.stop()


def test_an_int8_model_runs_live_eagerly(tiny_model):
    """int8 layers measure their activation scales on every call: the live engine must not trace
    them (a trace would freeze the first call's scales), yet it runs and makes frames."""
    from llia_core.portrait import prepare_portrait
    from llia_core.quantization import quantization_available, quantize_int8

    if not quantization_available():
        pytest.skip("this PyTorch has no oneDNN int8 kernels")
    portrait = prepare_portrait(np.random.default_rng(6).integers(0, 255, (40, 40, 3), dtype=np.uint8), 32,
                                mode="whole")
    avatar = LiveAvatar(LLIAPipeline(quantize_int8(tiny_model)), portrait, steps=1, clip_frames=2)
    assert avatar.pipe.frozen_limit == 0 and avatar.pipe._frozen == []
    avatar.push_avatar_audio(voice(0.5))
    frames = avatar.step() + avatar.step()
    assert len(frames) == 4 and all(f.image.shape == frames[0].image.shape for f in frames)
    assert np.ptp(np.stack([f.image for f in frames]).astype(int)) > 0


@pytest.mark.parametrize("phones", [0, 40])
def test_live_mode_draws_a_warp_model_the_mouth_shapes_of_the_offline_job(phones):
    """A model with a mouth model: live mode's excerpts give every frame the same mouth shape as the
    offline job gives it from the whole track (the mouth model reads 0.4 s back and 0.12 s ahead), the
    phones it hears too (streamed over the avatar's track as it plays)."""
    if phones:
        pytest.importorskip("pocketsphinx")
    from llia_core.audio import encode_audio
    from llia_core.config import MouthModelConfig
    from llia_core.models import LLIAModel
    from llia_core.portrait import prepare_portrait
    from conftest import tiny_config

    torch.manual_seed(0)
    cfg = tiny_config(reference_warp=True, residual_region="mouth", mouth_model=MouthModelConfig(width=16, hidden=16,
                                                                                                   phones=phones))
    model = LLIAModel(cfg).eval().requires_grad_(False)
    torch.nn.init.normal_(model.mouth_model.head[-1].weight, std=0.5)
    torch.nn.init.constant_(model.mouth_model.head[-1].bias, 0.3)
    portrait = prepare_portrait(np.random.default_rng(5).integers(0, 255, (40, 40, 3), dtype=np.uint8), 32,
                                mode="whole")
    pipe = LLIAPipeline(model)
    seen = []
    real = pipe.new_job

    def spy(clip, audio, states, motion, sampler):
        job = real(clip, audio, states, motion, sampler)
        seen.append(job.mouth[0, -clip.length:].clone())
        return job

    pipe.new_job = spy
    avatar = LiveAvatar(pipe, portrait, steps=1, clip_frames=2, frozen=False)
    wave = np.concatenate([np.zeros(4000, np.float32), voice(1.0), np.zeros(8000, np.float32)])  # silence on both sides, as on the live track
    with avatar._lock:
        avatar._track, avatar._track_offset = wave, 0
    avatar.now = lambda: (avatar.next_frame + 0.5) / avatar.fps - avatar.lead
    seen.clear()
    frames = []
    while len(frames) < 30:
        frames += avatar.step()
    live = torch.cat(seen)[:30]
    audio = encode_audio((wave, 16000), 25.0)
    states = torch.tensor([f.state for f in frames[:30]])
    offline = model.mouth_shapes(audio, torch.arange(30), states)
    speaking = states == SPEAKING
    assert speaking.sum() >= 10 and live[speaking, 0].std() > 0  # the mouth moves while it speaks
    assert torch.allclose(live, offline, atol=1e-4)
