"""The main job end to end: `python -m llia_core generate` -> mp4 with the right frames and audio."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from llia_core.checkpoints import BUNDLED_MODEL, save_model
from llia_core.cli import main
from llia_core.video_io import probe_video, read_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_model, tmp_path_factory):
    return save_model(tiny_model, tmp_path_factory.mktemp("m") / "tiny.safetensors")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    path = tmp_path_factory.mktemp("a") / "speech.wav"
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, int(44100 * 1.3)).astype(np.float32)
    sf.write(path, np.stack([wave, wave], 1), 44100)
    return path


def test_generate_writes_frames_and_audio(tiny_ckpt, speech, tmp_path, capsys):
    out = tmp_path / "avatar.mp4"
    code = main(["generate", "--model", str(tiny_ckpt), "--audio", str(speech), "--out", str(out),
                 "--states", "0-0.6:speaking,0.6-end:idle", "--quiet", "--seed", "3", "--head-motion", "0",
                 "--blink-rate", "0"])
    assert code == 0
    info = probe_video(out)
    assert info["num_frames"] == math.ceil(1.3 * 25) == 33
    assert abs(info["audio_seconds"] - 33 / 25) < 0.05
    assert (info["width"], info["height"]) == (512, 512)  # the bundled portrait's own size
    video = read_video(out)
    frames = video.frames.float()
    assert frames.shape[0] == 33 and video.audio is not None
    # the picture is the photo's own outside the face mask, and the face changes inside it
    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.portrait import face_paste_mask, load_image, prepare_portrait

    photo = torch.from_numpy(load_image(DEFAULT_PORTRAIT)).float()
    mask = torch.from_numpy(face_paste_mask(prepare_portrait(DEFAULT_PORTRAIT, 32), 512, 512))
    outside, inside = mask == 0, mask > 0.99
    assert outside.float().mean() > 0.6
    assert (frames[:, outside] - photo[outside]).abs().mean() < 3.5  # H.264 at crf 18 only (2.8 on a still)
    assert (frames[:, inside] - photo[inside]).abs().mean() > 10
    assert (frames[1:, inside] - frames[:-1, inside]).abs().mean() > 0.5  # real, changing frames
    printed = capsys.readouterr().out
    assert "33 frames" in printed and "512x512" in printed and "time to first frame" in printed


def test_crop_output_keeps_the_model_crop(tiny_ckpt, speech, tmp_path):
    out = tmp_path / "crop.mp4"
    assert main(["generate", "--model", str(tiny_ckpt), "--audio", str(speech), "--out", str(out), "--quiet",
                 "--output", "crop"]) == 0
    info = probe_video(out)
    assert (info["width"], info["height"], info["num_frames"]) == (32, 32, 33)
    out = tmp_path / "small.mp4"
    assert main(["generate", "--model", str(tiny_ckpt), "--audio", str(speech), "--out", str(out), "--quiet",
                 "--max-size", "300"]) == 0
    info = probe_video(out)
    assert (info["width"], info["height"], info["num_frames"]) == (300, 300, 33)


@pytest.mark.parametrize("args,words", [
    (["--portrait", "{bad_image}"], "could not read"),
    (["--audio", "{bad_audio}"], "could not decode"),
    (["--model", "no-such-model.safetensors"], "was not found"),
    (["--states", "0-9:speaking"], "timeline"),
    (["--crop", "face", "--portrait", "{flat_image}"], "no face found"),
])
def test_bad_inputs_give_one_clear_error(tiny_ckpt, speech, tmp_path, capsys, args, words):
    (tmp_path / "bad.png").write_bytes(b"\x00\x01 not an image")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    from PIL import Image

    Image.new("RGB", (100, 100), (128, 128, 128)).save(tmp_path / "flat.png")
    args = [a.format(bad_image=tmp_path / "bad.png", bad_audio=tmp_path / "bad.wav", flat_image=tmp_path / "flat.png")
            for a in args]
    base = ["generate", "--model", str(tiny_ckpt), "--audio", str(speech), "--out", str(tmp_path / "o.mp4"), "--quiet"]
    code = main(base + args)
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and "Traceback" not in err and err.count("\n") <= 3
    assert not (tmp_path / "o.mp4").exists()


def test_wrong_config_checkpoint_is_rejected(tiny_ckpt, capsys):
    from llia_core.checkpoints import load_model
    from llia_core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="was requested"):
        load_model(tiny_ckpt, expected_config="demo")


@pytest.mark.skipif(not BUNDLED_MODEL.exists(), reason="the bundled model is produced by the training commands")
def test_main_job_defaults_run_as_a_subprocess(tmp_path):
    """Exactly what the README's first command runs: every argument defaulted."""
    out = tmp_path / "avatar.mp4"
    proc = subprocess.run([sys.executable, "-m", "llia_core", "generate", "--out", str(out), "--quiet",
                           "--duration", "2.0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    info = probe_video(out)
    assert info["num_frames"] == 50 and abs(info["audio_seconds"] - 2.0) < 0.05
    assert (info["width"], info["height"]) == (512, 512)  # the bundled photo at its own size
    # the photo's own lips move with the speech, the head sways a little (the defaults: head motion 1,
    # 15 blinks a minute), and the picture away from the head stays the photo's pixels
    from llia_core.evaluation.controls import track
    from llia_core.portrait import load_image

    frames = read_video(out).frames.numpy()
    photo = load_image(str(BUNDLED_MODEL.parent / "portrait.png")).astype(np.float32)
    measured = track(frames)
    # the photo's lips follow the mouth model's shapes (the mesh's lip gap over width), open in speech
    import torch

    from llia_core.audio import encode_audio
    from llia_core.checkpoints import load_model
    from llia_core.cli import DEFAULT_AUDIO
    from llia_core.states import states_from_activity

    audio = encode_audio(DEFAULT_AUDIO, 25.0, duration=2.0)
    with torch.no_grad():
        shapes = load_model("bundled").mouth_shapes(audio, torch.arange(50), states_from_activity(audio.speech))
    opening, speech = measured["opening"], audio.speech.numpy()
    assert np.corrcoef(shapes[:, 0].numpy(), opening)[0, 1] > 0.7
    assert opening[speech].mean() > opening[~speech].mean() + 0.015
    assert 0.2 < np.nanstd(measured["roll"]) < 3.0  # degrees: a sway, not a still head, not a wobble
    body = np.abs(frames[:, 400:].astype(np.float32) - photo[None, 400:]).mean()
    assert body < 3.5  # H.264 noise only: the body and the picture below the head do not move


def test_killing_the_cli_mid_run_leaves_a_playable_partial(tiny_ckpt, tmp_path):
    import os
    import signal
    import time

    from llia_core.video_io import partial_path

    wav = tmp_path / "long.wav"
    t = np.arange(16000 * 120) / 16000
    sf.write(wav, (0.2 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    out = tmp_path / "long.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "llia_core", "generate", "--model", str(tiny_ckpt), "--audio",
                             str(wav), "--out", str(out), "--steps", "1", "--quiet"], env=env)
    partial = partial_path(out)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if partial.exists() and partial.stat().st_size > 60_000:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed; use longer audio"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()  # never a file that looks complete but is not
    info = probe_video(partial)
    assert info["num_frames"] >= 25 and info["num_frames"] % 25 == 0  # whole 1 s fragments
    video = read_video(partial)
    assert video.frames.shape[0] == info["num_frames"] and video.frames.float().std() > 0
    assert info["audio_seconds"] is not None and abs(info["audio_seconds"] - info["num_frames"] / 25) < 0.1
