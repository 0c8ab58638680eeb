"""Every bad input we know of gets one clear sentence (problem + fix) before heavy work starts.

The test runs them all and checks the table in docs/bad_inputs.md against what the code says (numbers
in the notes, which move with float rounding between machines, are not compared); with
``LLIA_UPDATE_DOCS=1`` it rewrites the table instead.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from conftest import ROOT, tiny_config
from llia_core.audio import encode_audio
from llia_core.checkpoints import load_model, save_model
from llia_core.errors import LLIAError
from llia_core.portrait import prepare_portrait
from llia_core.states import parse_timeline

RESULTS: list[tuple[str, str, str]] = []  # (input, outcome, message)


def _wav(path, wave, sr, subtype="PCM_16"):
    sf.write(path, wave, sr, subtype=subtype)
    return path


def _speech(seconds, sr, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32) if channels > 1 else wave.astype(np.float32)


def _face_image(size, faces=1):
    """A rendered test identity at 384 px scaled into a canvas; with faces=2 a smaller second face."""
    import cv2

    from llia_core.training.data.identity import identity_from_id
    from llia_core.training.data.render import FramePose, render_frame

    face = render_frame(identity_from_id(3), FramePose(), 384)
    if faces == 1:
        return cv2.resize(face, (size, size), interpolation=cv2.INTER_LINEAR)
    img = np.full((size, size, 3), 200, np.uint8)
    big, small = int(size * 0.55), int(size * 0.4)
    img[:big, :big] = cv2.resize(face, (big, big), interpolation=cv2.INTER_AREA)
    img[size - small:, size - small:] = cv2.resize(face, (small, small), interpolation=cv2.INTER_AREA)
    return img


def _cases(tmp: Path):
    bundled = ROOT / "llia_core" / "assets" / "llia-demo.safetensors"
    tiny = tmp / "tiny.safetensors"
    from llia_core.models import LLIAModel

    save_model(LLIAModel(tiny_config()), tiny)
    truncated = tmp / "truncated.safetensors"
    truncated.write_bytes(bundled.read_bytes()[:100_000])
    notsafe = tmp / "model.ckpt"
    torch.save({"w": torch.zeros(2)}, notsafe)
    corrupt_wav = tmp / "corrupt.wav"
    corrupt_wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    truncated_wav = tmp / "truncated.wav"
    truncated_wav.write_bytes(_wav(tmp / "ok.wav", _speech(1.0, 16000), 16000).read_bytes()[:3000])
    png_as_wav = tmp / "image.wav"
    Image.new("RGB", (8, 8)).save(png_as_wav, format="PNG")
    wav_as_png = tmp / "audio.png"
    wav_as_png.write_bytes((tmp / "ok.wav").read_bytes())
    trunc_png = tmp / "truncated.png"
    buf = io.BytesIO()
    Image.fromarray(_face_image(256)).save(buf, format="PNG")
    trunc_png.write_bytes(buf.getvalue()[:2000])
    enc = lambda src, **kw: encode_audio(src, 25.0, **kw)  # noqa: E731
    fail = [
        ("corrupt WAV file", lambda: enc(corrupt_wav)),
        ("truncated WAV file", lambda: enc(truncated_wav)),
        ("PNG image named .wav", lambda: enc(png_as_wav)),
        ("missing audio file", lambda: enc(tmp / "nope.mp3")),
        ("zero-length audio", lambda: enc((np.zeros(0, np.float32), 16000))),
        ("audio shorter than one frame (10 ms)", lambda: enc((np.zeros(160, np.float32), 16000))),
        ("audio with NaN samples", lambda: enc((np.array([0.1, np.nan] * 800, np.float32), 16000))),
        ("sample rate 0", lambda: enc((np.zeros(1600, np.float32), 0))),
        ("start past the end of the audio", lambda: enc(tmp / "ok.wav", start=5.0)),
        ("truncated PNG", lambda: prepare_portrait(trunc_png, 128)),
        ("WAV file named .png", lambda: prepare_portrait(wav_as_png, 128)),
        ("image without a face (mode face)", lambda: prepare_portrait(np.full((200, 200, 3), 90, np.uint8), 128, mode="face")),
        ("image 8x8 px", lambda: prepare_portrait(np.zeros((8, 8, 3), np.uint8), 128)),
        ("empty image array", lambda: prepare_portrait(np.zeros((0, 0, 3), np.uint8), 128)),
        ("checkpoint truncated", lambda: load_model(truncated)),
        ("checkpoint of another config", lambda: load_model(tiny, expected_config="demo")),
        ("pickle checkpoint (.ckpt)", lambda: load_model(notsafe)),
        ("missing checkpoint", lambda: load_model(tmp / "missing.safetensors")),
        ("timeline with overlap", lambda: parse_timeline("0-2:speaking,1.5-3:idle", 75, 25.0)),
        ("timeline with a gap", lambda: parse_timeline("0-1:speaking,1.5-3:idle", 75, 25.0)),
        ("timeline past the audio", lambda: parse_timeline("0-5:speaking", 75, 25.0)),
        ("timeline with unknown state", lambda: parse_timeline("0-3:singing", 75, 25.0)),
        ("timeline garbage", lambda: parse_timeline("speaking from 0 to 3", 75, 25.0)),
        ("training a 384 px model on clips ingested at 128 px", lambda: _train_at_another_size()),
    ]
    ok = [
        ("all-silent audio (valid: the avatar idles)", lambda: _silence_idles(enc)),
        ("8 kHz phone recording", lambda: enc(_wav(tmp / "8k.wav", _speech(1.0, 8000), 8000))),
        ("96 kHz 24-bit recording", lambda: enc(_wav(tmp / "96k.wav", _speech(1.0, 96000), 96000, "PCM_24"))),
        ("6-channel audio", lambda: enc(_wav(tmp / "6ch.wav", _speech(1.0, 48000, 6), 48000))),
        ("MP3 / OGG / FLAC", lambda: [enc(_wav(tmp / f"a.{e}", _speech(1.0, 44100), 44100, s)) for e, s in
                                      (("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III"))]),
        ("32x32 image", lambda: prepare_portrait(np.full((32, 32, 3), 120, np.uint8), 128)),
        ("8000x8000 image", lambda: prepare_portrait(_face_image(8000), 128)),
        ("grayscale image", lambda: prepare_portrait(_face_image(256).mean(2).astype(np.uint8), 128)),
        ("RGBA image with transparency", lambda: prepare_portrait(np.dstack([_face_image(256), np.full((256, 256), 128, np.uint8)]), 128)),
        ("16-bit image", lambda: prepare_portrait(_face_image(256).astype(np.uint16) * 257, 128)),
        ("several faces (the largest is used)", lambda: _largest_face(prepare_portrait(_face_image(768, faces=2), 128))),
        ("a video as the portrait (its first frame)", lambda: _video_portrait(tmp)),
    ] + _photo_cases()
    return fail, ok


ASTRONAUT = ROOT / "llia_core" / "assets" / "portrait.png"  # public domain (NASA), the bundled portrait
REAL_PHOTOS = ROOT.parent / "shared" / "realfaces" / "photos"


def _landmarked(portrait, angle=None):
    assert portrait.landmarks is not None, "no landmarks"
    if angle is not None:
        got = float(np.degrees(portrait.alignment.params[1]))
        assert abs((got - angle + 180) % 360 - 180) < 8, f"crop turned {got:.0f} degrees, expected {angle}"
    return portrait


def _photo_cases():
    """Real-photo situations, from the public-domain bundled photo (and the stylised portraits in
    ../shared/realfaces when it is there; only their names and counts reach the table)."""
    import cv2

    a = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    h, w = a.shape[:2]
    tilted = cv2.warpAffine(a, cv2.getRotationMatrix2D((w / 2, h / 2), 35, 1), (w, h), borderMode=cv2.BORDER_REFLECT)
    tiny = np.full((1400, 1800, 3), 90, np.uint8)
    tiny[800:928, 900:1028] = cv2.resize(a, (128, 128), interpolation=cv2.INTER_AREA)
    squeezed = np.ascontiguousarray(cv2.resize(a, (256, 512), interpolation=cv2.INTER_AREA))
    cases = [
        ("photo, head tilted 35 degrees (crop turned upright)",
         lambda: _landmarked(prepare_portrait(tilted, 128), -32)),
        ("photo turned sideways (90 degrees, no EXIF)",
         lambda: _landmarked(prepare_portrait(np.ascontiguousarray(np.rot90(a)), 128), -87)),
        ("photo upside down", lambda: _landmarked(prepare_portrait(np.ascontiguousarray(a[::-1, ::-1]), 128))),
        ("grayscale photo", lambda: _landmarked(prepare_portrait(a.mean(2).astype(np.uint8), 128))),
        ("photo squeezed to half its width", lambda: _landmarked(prepare_portrait(squeezed, 128))),
        ("face at the picture's edge", lambda: _landmarked(prepare_portrait(np.ascontiguousarray(a[:200, 180:]), 128))),
        ("tiny face (about 30 px) in a 1800x1400 picture", lambda: _landmarked(prepare_portrait(tiny, 128))),
    ]
    if REAL_PHOTOS.is_dir():
        photos = sorted(p for p in REAL_PHOTOS.iterdir() if p.suffix in (".png", ".jpg"))
        cases.append((f"the {len(photos)} real and stylised portraits of ../shared/realfaces/photos "
                      "(photos, paintings, sculpture, 3D renders; animals)", lambda: _photo_census(photos)))
    return cases


class _Census:
    def __init__(self, notes):
        self.notes = notes


def _photo_census(photos):
    counts: dict[str, int] = {}
    for path in photos:
        p = prepare_portrait(path, 128)
        kind = ("landmarks" if p.landmarks is not None else "face box (Haar fallback)" if p.face_box is not None
                else "no face: whole image")
        counts[kind] = counts.get(kind, 0) + 1
    assert counts.get("landmarks", 0) >= 0.85 * len(photos)
    return _Census([f"{k}: {v}" for k, v in counts.items()])


def _train_at_another_size():
    from llia_core.config import get_config
    from llia_core.training.batches import clip_to_training
    from llia_core.training.data.clips import make_clip

    return clip_to_training(make_clip(1, 0, seconds=0.4, resolution=128), get_config("sd15-384"))


def _video_portrait(tmp: Path):
    from llia_core.video_io import write_mp4

    first = _face_image(256)
    frames = np.stack([first] + [np.zeros_like(first)] * 4)
    path = write_mp4(tmp / "clip.mp4", frames, 25.0)
    portrait = prepare_portrait(path, 128)
    assert portrait.landmarks is not None  # the face of the first frame, not a black one
    assert any("is a video" in n for n in portrait.notes)
    return portrait


def _largest_face(portrait):
    assert portrait.face_box is not None and portrait.face_box.center[0] < 768 * 0.55
    return portrait


def _silence_idles(enc):
    from llia_core.states import IDLE, states_from_activity

    a = enc((np.zeros(16000, np.float32), 16000))
    assert (states_from_activity(a.speech) == IDLE).all()
    return a


def _notes(result) -> str:
    notes = getattr(result, "notes", None)
    return "; ".join(notes) if notes else ""


def test_every_bad_input_gets_a_clear_error_and_the_table_is_written(tmp_path):
    fail, ok = _cases(tmp_path)
    problems = []
    for name, fn in fail:
        try:
            fn()
        except LLIAError as exc:
            msg = str(exc)
            if "\n" in msg or len(msg) < 25 or not (msg[0].isalnum() or msg[0] in "'\""):
                problems.append(f"{name}: message not one clear sentence: {msg!r}")
            RESULTS.append((name, f"`{type(exc).__name__}`", msg))
        except Exception as exc:  # noqa: BLE001 - exactly what this test exists to catch
            problems.append(f"{name}: raised {type(exc).__name__} instead of an LLIAError: {exc}")
        else:
            problems.append(f"{name}: was accepted")
    for name, fn in ok:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{name}: should work but raised {type(exc).__name__}: {exc}")
        else:
            RESULTS.append((name, "accepted", _notes(result) or "-"))
    assert not problems, "\n".join(problems)
    lines = ["# Bad inputs and what they get", "",
             "Written by `tests/test_bad_inputs.py` from what the code does; the test checks it on every run and "
             "`LLIA_UPDATE_DOCS=1 pytest tests/test_bad_inputs.py` rewrites it.", "",
             "| input | outcome | message / note |", "|---|---|---|"]
    lines += [f"| {n} | {o} | {m.replace('|', '/').replace(str(tmp_path), '<dir>')} |" for n, o, m in RESULTS]
    doc = ROOT / "docs" / "bad_inputs.md"
    if os.environ.get("LLIA_UPDATE_DOCS") == "1":
        doc.write_text("\n".join(lines) + "\n")
        return
    decimals = lambda text: re.sub(r"\d+\.\d+", "#", text)  # noqa: E731 - landmark measures vary by machine
    documented = {decimals(line) for line in doc.read_text().splitlines()}
    stale = [line for line in lines if decimals(line) not in documented]
    assert not stale, ("docs/bad_inputs.md no longer says what the code does; rerun this test with "
                       "LLIA_UPDATE_DOCS=1 to rewrite it:\n" + "\n".join(stale))
