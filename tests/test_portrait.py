"""Portrait: every image kind, face finding on rendered faces, framing contract, clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from llia_core.errors import PortraitError
from llia_core.portrait import (FaceBox, crop_portrait, default_face_mask, detect_faces, load_image, paste_back,
                                prepare_portrait)
from llia_core.training.data.identity import identity_from_id
from llia_core.training.data.render import FramePose, render_frame


@pytest.fixture(scope="module")
def face_rgb():
    return render_frame(identity_from_id(3), FramePose(), 384)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "P", "I;16"])
def test_every_pil_mode_loads_as_rgb(tmp_path, face_rgb, mode):
    img = Image.fromarray(face_rgb)
    if mode == "I;16":
        img = Image.fromarray((np.asarray(img.convert("L")).astype(np.uint16) * 257))
    else:
        img = img.convert(mode)
    path = tmp_path / "p.png"
    img.save(path)
    rgb = load_image(path)
    assert rgb.shape == (384, 384, 3) and rgb.dtype == np.uint8
    assert 40 < rgb.mean() < 220


def test_arrays_tensors_and_comfy_batches(face_rgb):
    as_float = torch.from_numpy(face_rgb).float() / 255
    for src in (face_rgb, face_rgb[..., 0], as_float, as_float[None], np.float32(face_rgb) / 255):
        rgb = load_image(src)
        assert rgb.shape == (384, 384, 3)
    with pytest.raises(PortraitError, match="empty"):
        load_image(torch.zeros(0, 64, 64, 3))


def test_bad_files_and_sizes(tmp_path):
    with pytest.raises(PortraitError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "fake.png").write_bytes(b"RIFF....WAVEfmt not an image")
    with pytest.raises(PortraitError, match="could not read"):
        load_image(tmp_path / "fake.png")
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(PortraitError, match="could not read"):
        load_image(tmp_path / "trunc.png")
    with pytest.raises(PortraitError, match="at least 32x32"):
        load_image(np.zeros((20, 20, 3), np.uint8))


def test_huge_image_is_reduced(tmp_path):
    Image.new("RGB", (8000, 8000), (120, 90, 60)).save(tmp_path / "huge.png")
    rgb = load_image(tmp_path / "huge.png")
    assert max(rgb.shape[:2]) <= 2048
    p = prepare_portrait(tmp_path / "huge.png", 128, mode="whole")
    assert p.image.shape == (3, 128, 128)


def test_rendered_face_is_found_and_framed_like_training(face_rgb):
    faces = detect_faces(face_rgb)
    assert faces, "the Haar cascade should find a frontal cartoon face"
    box = faces[0]
    expected = 384 / 1.8
    assert abs(box.w - expected) / expected < 0.15
    assert abs(box.center[0] - 192) < 20 and abs(box.center[1] - 192) < 20
    p = prepare_portrait(face_rgb, 128, mode="face")
    direct = torch.from_numpy(render_frame(identity_from_id(3), FramePose(), 128)).float() / 255
    mse = ((p.image.permute(1, 2, 0) - direct) ** 2).mean()
    assert 10 * torch.log10(1 / mse) > 18  # same framing within a few pixels


def test_no_face_modes():
    flat = np.full((200, 300, 3), 127, np.uint8)
    with pytest.raises(PortraitError, match="whole"):
        prepare_portrait(flat, 128, mode="face")
    p = prepare_portrait(flat, 128, mode="auto")
    assert p.face_box is None and "no face found" in p.notes[0]
    assert p.crop_box == (50, 0, 250, 200)
    with pytest.raises(PortraitError, match="crop mode"):
        prepare_portrait(flat, 128, mode="zoom")


def test_several_faces_use_the_largest(face_rgb):
    import cv2

    small = cv2.resize(face_rgb, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((420, 700, 3), 200, np.uint8)
    canvas[10:394, 0:384] = face_rgb
    canvas[80:336, 420:676] = small
    p = prepare_portrait(canvas, 128, mode="face")
    assert p.face_box.center[0] < 384
    assert any("used the largest" in n for n in p.notes)


def test_crop_contract_and_mask():
    rgb = np.zeros((400, 400, 3), np.uint8)
    p = crop_portrait(rgb, 128, face=FaceBox(150, 100, 100, 100), face_scale=1.8)
    x0, y0, x1, y1 = p.crop_box
    assert (x1 - x0) == 180 and abs((x0 + x1) / 2 - 200) <= 1 and abs((y0 + y1) / 2 - 150) <= 1
    mask = default_face_mask(128, 1.8)
    expected_area = np.pi / 4 * (1.1 * 128 / 1.8) ** 2
    assert abs(float(mask.sum()) - expected_area) / expected_area < 0.03
    assert torch.equal(p.face_mask, mask)


def test_paste_back_round_trip(face_rgb):
    p = prepare_portrait(face_rgb, 128, mode="face")
    frames = p.image.permute(1, 2, 0)[None].repeat(2, 1, 1, 1)
    full = paste_back(frames, p, face_rgb)
    assert full.shape == (2, 384, 384, 3)
    x0, y0, x1, y1 = p.crop_box
    inner = full[0, max(0, y0) + 30:min(384, y1) - 30, max(0, x0) + 30:min(384, x1) - 30]
    src = torch.from_numpy(face_rgb).float()[max(0, y0) + 30:min(384, y1) - 30, max(0, x0) + 30:min(384, x1) - 30] / 255
    assert (inner - src).abs().mean() < 0.05
