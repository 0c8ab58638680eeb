"""The node pack without ComfyUI: registration, tooltips, each node's contract, cancel, bad input."""

import math
import os
import sys
import types

import numpy as np
import pytest
import torch

from comfy_harness import load_pack
from llia_core.checkpoints import save_model
from llia_core.errors import LLIAError


@pytest.fixture(scope="module")
def pack():
    return load_pack()


@pytest.fixture(scope="module")
def model_dir(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    save_model(tiny_model, d / "tiny.safetensors")
    return d


@pytest.fixture()
def handle(pack, model_dir, monkeypatch):
    monkeypatch.setenv("LLIA_MODELS_DIR", str(model_dir))
    return pack.NODE_CLASS_MAPPINGS["LLIALoadModel"]().load("tiny.safetensors", "cpu", "fp32")[0]


def comfy_audio(seconds, sr=22050):
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, (1, 2, int(seconds * sr))).astype(np.float32)
    return {"waveform": torch.from_numpy(wave), "sample_rate": sr}


def run_all(pack, handle, seconds=0.8, image=None, crop="whole", **sampler_kw):
    m = pack.NODE_CLASS_MAPPINGS
    audio, n = m["LLIAEncodeAudio"]().encode(handle, comfy_audio(seconds), 25.0)
    if image is None:
        image = torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(0))
    ref, preview, _, _ = m["LLIAReferencePortrait"]().prepare(handle, image, crop, 1.8)
    states, text = m["LLIAStateSwitcher"]().states(audio, "timeline", "0-0.4:speaking,0.4-end:idle")
    sampler = m["LLIAConsistencyStep"]().settings("consistency", 2, 1.0, 1.0, 5)[0]
    out = m["LLIAVariableLengthSampler"]().sample(handle, audio, ref, states, sampler, 1, 4, "frames", "llia/test",
                                                  **sampler_kw)
    return n, preview, text, out


def test_every_node_is_registered_with_tooltips(pack):
    assert len(pack.NODE_CLASS_MAPPINGS) == 8
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        assert cls.CATEGORY == "LLIA" and hasattr(cls, cls.FUNCTION) and cls.DESCRIPTION
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS)
        for kind, group in spec.items():
            for inp, value in group.items():
                if kind == "hidden":  # filled in by ComfyUI, never shown
                    assert value in ("UNIQUE_ID", "PROMPT", "EXTRA_PNGINFO"), f"{name}.{inp}"
                    continue
                assert value[1].get("tooltip"), f"{name}.{inp} has no tooltip"


def test_model_list_offers_bundled_and_folder_files(pack, model_dir, monkeypatch):
    monkeypatch.setenv("LLIA_MODELS_DIR", str(model_dir))
    names = pack.NODE_CLASS_MAPPINGS["LLIALoadModel"].INPUT_TYPES()["required"]["model"][0]
    assert names[0] == "bundled" and "tiny.safetensors" in names


def test_full_chain_outputs(pack, handle):
    threads = torch.get_num_threads()
    n, preview, text, out = run_all(pack, handle)
    assert torch.get_num_threads() == threads  # the pipelined stages leave the host's threads as they were
    frames, audio, fps, report = out["result"]
    assert n == math.ceil(0.8 * 25) == frames.shape[0]
    assert frames.shape == (20, 40, 40, 3) and frames.dtype == torch.float32  # the portrait's own size
    assert 0 <= float(frames.min()) and float(frames.max()) <= 1 and float((frames[1:] - frames[:-1]).abs().mean()) > 0
    assert audio["sample_rate"] == 16000 and audio["waveform"].shape == (1, 1, round(n / fps * 16000))
    assert fps == 25.0 and "20 frames of 40x40" in report and "first frame" in report
    # a CPU model and 2 steps on 2+ cores: pipelined, as on the command line
    assert ("2 overlapping stages" in report) == ((os.cpu_count() or 1) >= 2)
    assert preview.shape == (1, 32, 32, 3)
    assert text == "0-0.4:speaking,0.4-end:idle"
    crop = run_all(pack, handle, frame_size="crop")[3]["result"][0]
    assert crop.shape == (20, 32, 32, 3)


@pytest.mark.parametrize("share, frames", [(True, 1), (False, 2)])
def test_sampler_nodes_pass_motion_frames_and_core_sharing_to_the_engine(pack, handle, monkeypatch, share, frames):
    """Consistency Step's motion_frames and the sampler's share_cores reach the pipelined stages (off: the
    same seed gives the same frames bit for bit)."""
    from llia_core.pipeline import pipelined

    seen = []
    original = pipelined.PipelinedLLIA.__init__

    def spy(self, pipe, *args, **kwargs):
        seen.append(kwargs.get("share_cores"))
        original(self, pipe, *args, **kwargs)

    monkeypatch.setattr(pipelined.PipelinedLLIA, "__init__", spy)
    motion_seen = []
    first_job = pipelined.LLIAPipeline.new_job
    monkeypatch.setattr(pipelined.LLIAPipeline, "new_job", lambda self, clip, audio, states, motion, sampler:
                        (motion_seen.append(motion.shape[2]), first_job(self, clip, audio, states, motion, sampler))[1])
    m = pack.NODE_CLASS_MAPPINGS
    sampler = m["LLIAConsistencyStep"]().settings("consistency", 2, 1.0, 1.0, 5, motion_frames=frames)[0]
    assert sampler.motion_frames == frames
    monkeypatch.setattr(m["LLIAConsistencyStep"], "settings", lambda self, *a, **k: (sampler,))
    out = run_all(pack, handle, share_cores=share)
    assert seen == [share]
    # the first clip has none to see, the second at most the first's 1 frame, later ones the setting
    assert motion_seen[0] == 0 and motion_seen[-1] == max(motion_seen) == frames
    if not share:
        assert torch.equal(out[3]["result"][0], run_all(pack, handle, share_cores=share)[3]["result"][0])


def test_real_photo_comes_back_at_full_size_with_its_own_pixels(pack, handle):
    import json

    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.portrait import load_image

    photo = torch.from_numpy(load_image(DEFAULT_PORTRAIT)).float()[None] / 255
    ref, preview, mask, transform = pack.NODE_CLASS_MAPPINGS["LLIAReferencePortrait"]().prepare(
        handle, photo, "face", 1.8)
    assert mask.shape == (1, 512, 512) and 0.01 < float(mask.mean()) < 0.4
    info = json.loads(transform)
    assert info["crop_size"] == 32 and info["source_size"] == [512, 512] and len(info["source_to_crop"]) == 2
    frames = run_all(pack, handle, image=photo, crop="face")[3]["result"][0]
    assert frames.shape == (20, 512, 512, 3)
    outside, inside = mask[0] == 0, mask[0] > 0.99
    assert torch.equal((frames[:, outside] * 255).round(), (photo[0, outside] * 255).round().expand(20, -1, -1))
    assert float((frames[:, inside] - photo[0, inside]).abs().mean()) > 0.02
    capped = run_all(pack, handle, image=photo, crop="face", max_size=256)[3]["result"][0]
    assert capped.shape == (20, 256, 256, 3)


def test_mp4_only_mode_writes_a_file_and_returns_a_preview(pack, handle, tmp_path, monkeypatch):
    from llia_core.video_io import probe_video

    monkeypatch.setenv("LLIA_OUTPUT_DIR", str(tmp_path))
    m = pack.NODE_CLASS_MAPPINGS
    audio, n = m["LLIAEncodeAudio"]().encode(handle, comfy_audio(1.6), 25.0)
    ref = m["LLIAReferencePortrait"]().prepare(handle, torch.rand(1, 40, 40, 3), "whole", 1.8)[0]
    states, _ = m["LLIAStateSwitcher"]().states(audio, "speaking", "")
    sampler = m["LLIAConsistencyStep"]().settings("consistency", 1, 1.0, 1.0, 0)[0]
    out = m["LLIAVariableLengthSampler"]().sample(handle, audio, ref, states, sampler, 2, 8,
                                                  "mp4 only (long audio)", "llia/long")
    frames = out["result"][0]
    assert frames.shape[0] <= 16
    files = list((tmp_path / "llia").glob("long_*.mp4"))
    assert len(files) == 1 and probe_video(files[0])["num_frames"] == n == 40
    with pytest.raises(LLIAError, match="inside the output folder"):
        m["LLIAVariableLengthSampler"]().sample(handle, audio, ref, states, sampler, 2, 8, "frames + mp4", "../../x")


def test_cancel_stops_within_a_step_and_the_next_run_works(pack, handle, monkeypatch):
    class Interrupted(Exception):
        pass

    calls = {"n": 0, "limit": 3}
    mm = types.ModuleType("comfy.model_management")

    def throw():
        calls["n"] += 1
        if calls["n"] >= calls["limit"]:
            raise Interrupted()

    mm.throw_exception_if_processing_interrupted = throw
    mm.soft_empty_cache = lambda: None
    mm.get_torch_device = lambda: "cpu"
    comfy = types.ModuleType("comfy")
    comfy.model_management = mm
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    before = {k: v.clone() for k, v in handle.model.state_dict().items()}
    with pytest.raises(Interrupted):
        run_all(pack, handle)
    # stopped at the third denoising step, not at the end of the run (the other pipeline stage may
    # finish the one step it is in)
    assert 3 <= calls["n"] <= 4
    calls["limit"] = 10**9
    frames = run_all(pack, handle)[3]["result"][0]
    monkeypatch.delitem(sys.modules, "comfy.model_management")
    monkeypatch.delitem(sys.modules, "comfy")
    clean = run_all(pack, handle)[3]["result"][0]
    # the pipelined stages lend cores, so float rounding varies run to run: at most one 8-bit level
    assert float((frames - clean).abs().max()) <= 1 / 255 + 1e-6 and float((frames - clean).abs().mean()) < 1e-4
    after = handle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bad_inputs(pack, handle):
    m = pack.NODE_CLASS_MAPPINGS
    with pytest.raises(LLIAError, match="empty"):
        m["LLIAReferencePortrait"]().prepare(handle, torch.zeros(0, 64, 64, 3), "auto", 1.8)
    with pytest.raises(LLIAError, match="empty"):
        m["LLIAEncodeAudio"]().encode(handle, {"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000}, 25.0)
    with pytest.raises(LLIAError, match="was not found"):
        m["LLIALoadModel"]().load("missing.safetensors", "cpu", "fp32")
    audio, _ = m["LLIAEncodeAudio"]().encode(handle, comfy_audio(0.5), 25.0)
    with pytest.raises(LLIAError, match="overlap"):
        m["LLIAStateSwitcher"]().states(audio, "timeline", "0-0.3:speaking,0.2-end:idle")


def test_listener_audio_makes_the_avatar_listen(pack, handle):
    m = pack.NODE_CLASS_MAPPINGS
    silent = {"waveform": torch.zeros(1, 1, 16000), "sample_rate": 16000}
    audio, n = m["LLIAEncodeAudio"]().encode(handle, silent, 25.0)
    t = torch.arange(16000) / 16000
    f0 = 2 * math.pi * 150 * t
    voice = sum(torch.sin(k * f0) / k for k in range(1, 15)) * 0.2 * (0.4 + 0.6 * (torch.sin(2 * math.pi * 4 * t) > 0))
    states, text = m["LLIAStateSwitcher"]().states(audio, "auto", "", {"waveform": voice[None, None], "sample_rate": 16000})
    assert (states == 1).float().mean() > 0.7 and "listening" in text


def test_live_view_node_serves_the_page_and_restarts_cleanly(pack, handle):
    import json
    import socket
    import time
    import urllib.request

    m = pack.NODE_CLASS_MAPPINGS
    image = torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(0))
    ref = m["LLIAReferencePortrait"]().prepare(handle, image, "whole", 1.8)[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = m["LLIALiveView"]()
    live = sys.modules[type(node).__module__]
    out = node.start(handle, ref, port, 1, 2)
    url = out["result"][0]
    assert url == f"http://127.0.0.1:{port}/" and out["ui"]["text"] == [url]
    first = live._SERVERS[port]
    assert first.proc.pid != os.getpid() and first.running  # its own process, the standalone engine
    try:
        assert b"<canvas" in urllib.request.urlopen(url, timeout=10).read()
        out = node.start(handle, ref, port, 1, 2)  # queued again: the old avatar stops, a new one starts
        assert not first.running and live._SERVERS[port].running
        time.sleep(0.5)
        stats = json.loads(urllib.request.urlopen(url + "api/stats", timeout=10).read())
        assert stats["paused"] and stats["frames"] == 0  # nobody watching: nothing generated

        import asyncio

        import aiohttp

        from llia_core.live import parse_message

        async def watch():
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(url + "ws") as ws:
                    while True:
                        msg = parse_message((await ws.receive(timeout=10)).data)
                        if msg["type"] == "frame":
                            return msg

        assert asyncio.run(watch())["index"] >= 0  # a page connected: frames come
        stats = json.loads(urllib.request.urlopen(url + "api/stats", timeout=10).read())
        assert stats["frames"] > 0
        second = live._SERVERS[port]
        second.proc.stdin.close()  # what the host's end of the pipe does when ComfyUI exits or is killed
        second.proc.wait(30)
        assert not second.running
    finally:
        live.stop_all()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(url) -> bool:
    import urllib.error
    import urllib.request

    try:
        return b"<canvas" in urllib.request.urlopen(url, timeout=2).read()
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def test_live_view_stops_from_the_graph_on_rerun_elsewhere_and_when_comfyui_unloads(pack, handle, monkeypatch):
    m = pack.NODE_CLASS_MAPPINGS
    live = sys.modules[m["LLIALiveView"].__module__]
    image = torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(0))
    ref = m["LLIAReferencePortrait"]().prepare(handle, image, "whole", 1.8)[0]
    node = m["LLIALiveView"]()
    a, b = _free_port(), _free_port()
    try:
        url = node.start(handle, ref, a, 1, 2, unique_id="7")["result"][0]
        assert _serving(url)
        moved = node.start(handle, ref, b, 1, 2, unique_id="7")["result"][0]  # same node, other port
        assert _serving(moved) and not _serving(url) and set(live._SERVERS) == {b}
        out = node.start(handle, ref, b, 1, 2, live=False, unique_id="7")  # the switch set to 'stopped'
        assert out["result"][0] == f"stopped (port {b})" and not _serving(moved) and not live._SERVERS
        # ComfyUI's "Unload models" (comfy.model_management.unload_all_models) stops every live avatar
        calls = []
        fake = types.ModuleType("comfy.model_management")
        fake.unload_all_models = lambda: calls.append("comfy")
        monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
        monkeypatch.setitem(sys.modules, "comfy.model_management", fake)
        sys.modules["comfy"].model_management = fake
        url = m["LLIALiveView"]().start(handle, ref, a, 1, 2, unique_id="9")["result"][0]  # another node
        assert _serving(url)
        procs = list(live._SERVERS.values())
        fake.unload_all_models()
        assert calls == ["comfy"] and not live._SERVERS and not _serving(url)
        assert procs and not any(p.running for p in procs)  # the processes are gone, not just the pages
        comfy_bridge = sys.modules[live.__name__.rsplit(".", 1)[0] + ".comfy_bridge"]
        comfy_bridge.on_unload_models(live.stop_all)  # as a second start would: hooked once, not twice
        fake.unload_all_models()
        assert calls == ["comfy", "comfy"] and not live._SERVERS
    finally:
        live.stop_all()


def test_a_live_process_that_cannot_start_says_why(pack, handle):
    from llia_core.errors import LLIAError
    from llia_core.live.process import LiveProcess

    m = pack.NODE_CLASS_MAPPINGS
    image = torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(0))
    ref = m["LLIAReferencePortrait"]().prepare(handle, image, "whole", 1.8)[0]
    broken = LiveProcess("/no/such/model.safetensors", ref, _free_port())
    with pytest.raises(LLIAError, match="ended before serving.*not found"):
        broken.wait_ready()
    assert not broken.running and not broken._dir.exists()
