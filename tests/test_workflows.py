"""The shipped workflows: only known node types, and they run end to end through the node classes."""

import math
import shutil

import pytest

from comfy_harness import (CORE_WIDGETS, FakeCreateVideo, FakeLoadAudio, FakeLoadImage, FakePreview, FakeSaveVideo,
                           load_pack, load_workflow, to_api, execute)
from llia_core.checkpoints import save_model
from llia_core.video_io import probe_video, read_video

WORKFLOWS = ["llia_offline.json", "llia_streaming_preview.json"]
GENERATION_NODES = {"LLIALoadModel", "LLIAEncodeAudio", "LLIAReferencePortrait", "LLIAStateSwitcher",
                    "LLIAConsistencyStep", "LLIAVariableLengthSampler"}
ASSETS = __import__("pathlib").Path(__file__).resolve().parents[1] / "llia_core" / "assets"


@pytest.mark.parametrize("name", WORKFLOWS + ["llia_live.json"])
def test_workflow_uses_only_registered_or_core_nodes(name):
    pack = load_pack()
    wf = load_workflow(name)
    for node in wf["nodes"]:
        assert node["type"] in pack.NODE_CLASS_MAPPINGS or node["type"] in CORE_WIDGETS, node["type"]
    ours = {n["type"] for n in wf["nodes"]} & set(pack.NODE_CLASS_MAPPINGS)
    if name in WORKFLOWS:
        assert GENERATION_NODES <= ours  # every one of the six generation nodes is in each workflow
    else:
        assert "LLIALiveView" in ours
    if name != "llia_streaming_preview.json":  # the offline and live graphs show the motion controls
        assert "LLIAMotionSettings" in ours
    ids = {n["id"] for n in wf["nodes"]}
    for link in wf["links"]:
        assert link[1] in ids and link[3] in ids


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_end_to_end(name, tiny_model, tmp_path, monkeypatch):
    pack = load_pack()
    models = tmp_path / "models"
    save_model(tiny_model, models / "tiny.safetensors")
    monkeypatch.setenv("LLIA_MODELS_DIR", str(models))
    monkeypatch.setenv("LLIA_OUTPUT_DIR", str(tmp_path / "out"))
    inputs = tmp_path / "input"
    inputs.mkdir()
    shutil.copy(ASSETS / "portrait.png", inputs / "portrait.png")
    import soundfile as sf

    wave, sr = sf.read(ASSETS / "speech.wav", dtype="float32")
    sf.write(inputs / "speech.wav", wave[: int(2.3 * sr)], sr)  # 2.3 s keeps the test fast
    prompt = to_api(load_workflow(name), pack.NODE_CLASS_MAPPINGS)
    loader = [k for k, v in prompt.items() if v["class_type"] == "LLIALoadModel"][0]
    prompt[loader]["inputs"]["model"] = "tiny.safetensors"
    prompt[loader]["inputs"]["device"] = "cpu"
    saver = FakeSaveVideo(tmp_path)
    preview = FakePreview()
    core = {"LoadImage": FakeLoadImage(inputs), "LoadAudio": FakeLoadAudio(inputs), "CreateVideo": FakeCreateVideo(),
            "SaveVideo": saver, "PreviewAny": preview, "PreviewImage": preview}
    results = execute(prompt, pack.NODE_CLASS_MAPPINGS, core)
    sampler_id = [k for k, v in prompt.items() if v["class_type"] == "LLIAVariableLengthSampler"][0]
    frames, audio, fps, report = results[sampler_id]
    expected = math.ceil(2.3 * 25 - 1e-6)
    assert frames.shape[0] == expected and fps == 25.0
    assert audio["waveform"].shape[-1] == round(expected / 25 * 16000)
    info = probe_video(saver.saved[0])
    assert info["num_frames"] == expected and abs(info["audio_seconds"] - expected / 25) < 0.05
    video = read_video(saver.saved[0]).frames.float()
    assert video.std() > 1.0
    assert any("first frame" in str(p.get("source", "")) for p in preview.seen)


def test_live_workflow_starts_the_live_page(tiny_model, tmp_path, monkeypatch):
    import json
    import socket
    import sys
    import urllib.request

    pack = load_pack()
    save_model(tiny_model, tmp_path / "models" / "tiny.safetensors")
    monkeypatch.setenv("LLIA_MODELS_DIR", str(tmp_path / "models"))
    inputs = tmp_path / "input"
    inputs.mkdir()
    shutil.copy(ASSETS / "portrait.png", inputs / "portrait.png")
    prompt = to_api(load_workflow("llia_live.json"), pack.NODE_CLASS_MAPPINGS)
    for node in prompt.values():
        if node["class_type"] == "LLIALoadModel":
            node["inputs"].update(model="tiny.safetensors", device="cpu")
        if node["class_type"] == "LLIALiveView":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                node["inputs"]["port"] = port = s.getsockname()[1]
    preview = FakePreview()
    results = execute(prompt, pack.NODE_CLASS_MAPPINGS, {"LoadImage": FakeLoadImage(inputs), "PreviewAny": preview,
                                                         "PreviewImage": preview})
    live_id = [k for k, v in prompt.items() if v["class_type"] == "LLIALiveView"][0]
    url = results[live_id][0]
    try:
        assert url == f"http://127.0.0.1:{port}/"
        assert b"<canvas" in urllib.request.urlopen(url, timeout=10).read()
        assert json.loads(urllib.request.urlopen(url + "api/stats", timeout=10).read())["paused"]  # no page yet
        import asyncio

        import aiohttp

        from llia_core.live.server import parse_message

        async def first_frame():  # a page connects: frames of the workflow's portrait arrive
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(url + "ws") as ws:
                    for _ in range(200):
                        msg = parse_message((await ws.receive(timeout=30)).data)
                        if msg["type"] == "frame":
                            return msg
            return None

        frame = asyncio.run(first_frame())
        assert frame is not None and frame["pts"] >= 0 and len(frame["jpeg"]) > 100
        assert json.loads(urllib.request.urlopen(url + "api/stats", timeout=10).read())["frames"] > 0
    finally:
        sys.modules[pack.NODE_CLASS_MAPPINGS["LLIALiveView"].__module__]._SERVERS.pop(port).stop()
