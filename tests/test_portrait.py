"""Portrait: every image kind, alignment to the framing contract, the paste-back, clear errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llia_core import framing
from llia_core.errors import PortraitError
from llia_core.portrait import (Compositor, crop_frames, face_paste_mask, find_faces, load_image, output_size,
                                prepare_portrait, smooth_alignments)
from llia_core.portrait.align import Alignment, align_landmarks, fit_similarity
from llia_core.training.data.identity import identity_from_id
from llia_core.training.data.render import FramePose, render_frame

ASTRONAUT = Path(__file__).resolve().parents[1] / "llia_core" / "assets" / "portrait.png"


@pytest.fixture(scope="module")
def face_rgb():
    return render_frame(identity_from_id(3), FramePose(), 384)


@pytest.fixture(scope="module")
def photo():
    return load_image(ASTRONAUT)


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


def test_rendered_face_aligned_through_landmarks_matches_the_renderer(face_rgb):
    """The framing contract is one: a cartoon aligned from its landmarks is the renderer's own crop."""
    p = prepare_portrait(face_rgb, 128, mode="face")
    assert p.landmarks is not None and not p.notes
    direct = torch.from_numpy(render_frame(identity_from_id(3), FramePose(), 128)).float() / 255
    mse = ((p.image.permute(1, 2, 0) - direct) ** 2).mean()
    assert 10 * torch.log10(1 / mse) > 22  # within about a pixel
    x, y, scale = p.mouth_anchor.tolist()
    assert abs(x) < 0.05 and abs(y - framing.MOUTH_CENTRE_Y) < 0.05 and 0.8 < scale < 1.25


def test_a_lower_face_crop_is_the_whole_face_crop_zoomed_about_the_mouth(photo, face_rgb):
    """The real-people model's framing (the lower face) shows the same face, 2.6x larger: units map to
    pixels through the view, both crops of a photo agree on every landmark, and a cartoon rendered large
    and reframed is that crop of the photo's renderer."""
    from llia_core.config import get_config
    from llia_core.training.data.clips import reframe, rendered_size

    view = get_config("real-lower").framing
    pts = np.array([[0.0, 0.52], [0.3, 1.0], [-0.6, 0.1]])
    assert np.allclose(view.to_units(view.to_pixels(pts, 128), 128), pts)
    assert np.allclose(view.to_pixels([[0.0, view.centre_y]], 128), 64)
    whole, lower = prepare_portrait(photo, 128), prepare_portrait(photo, 128, view=view)
    assert lower.view == view and whole.view == framing.FACE
    # the same landmarks land on the same face-box units in either crop
    uw = whole.view.to_units(whole.alignment.to_crop(whole.landmarks.xy), 128)
    ul = lower.view.to_units(lower.alignment.to_crop(lower.landmarks.xy), 128)
    assert np.abs(uw - ul).max() < 1e-6
    assert torch.allclose(whole.mouth_anchor, lower.mouth_anchor, atol=1e-5)
    assert view.unit(128) / framing.FACE.unit(128) == pytest.approx(1.8 / 0.68)
    # a rendered cartoon: rendered at 339 px and reframed = the whole-face render's lower part
    big = render_frame(identity_from_id(3), FramePose(), rendered_size(view, 128))
    crop = reframe(big, view, 128).astype(np.float32)
    (x0, y0), (x1, y1) = framing.FACE.to_pixels(view.to_units([[0, 0], [128, 128]], 128), 384)
    import cv2

    direct = cv2.resize(face_rgb[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))], (128, 128),
                        interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.abs(crop - direct).mean() < 6  # the same picture, drawn at two sizes


def test_contract_targets_are_what_the_mesh_reads_on_rendered_faces():
    rows = []
    for ident in range(5, 400, 40):
        face = find_faces(render_frame(identity_from_id(ident), FramePose(), 384))[0]
        a, b = (framing.FACE.to_units([p], 384)[0] for p in face.eye_centres())
        m = framing.FACE.to_units([face.mouth_centre()], 384)[0]
        rows.append([(b[0] - a[0]) / 2, (a[1] + b[1]) / 2, m[1], face.mouth_width() / framing.FACE.unit(384)])
    eye_x, eye_y, mouth_y, width = np.median(rows, 0)
    assert abs(eye_x - framing.EYE_X) < 0.02 and abs(eye_y - framing.EYE_Y) < 0.02
    assert abs(mouth_y - framing.LANDMARK_MOUTH_Y) < 0.02 and abs(width - framing.LANDMARK_MOUTH_WIDTH) < 0.04


def test_real_photo_eyes_and_mouth_land_on_the_contract(photo):
    p = prepare_portrait(photo, 128)
    a, b = (p.alignment.to_crop([e])[0] for e in p.landmarks.eye_centres())
    m = p.alignment.to_crop([p.landmarks.mouth_centre()])[0]
    target = framing.FACE.to_pixels(framing.alignment_targets(), 128)
    u = framing.FACE.unit(128)
    assert np.hypot(*(a - target[0])) < 0.12 * u and np.hypot(*(b - target[1])) < 0.12 * u
    assert np.hypot(*(m - target[2])) < 0.12 * u
    assert p.valid.min() == 1.0  # the astronaut's face is well inside the picture


def test_tilted_head_is_turned_upright(photo):
    import cv2

    h, w = photo.shape[:2]
    tilted = cv2.warpAffine(photo, cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0), (w, h),
                            borderMode=cv2.BORDER_REFLECT)
    upright = prepare_portrait(photo, 128)
    turned = prepare_portrait(tilted, 128)
    assert abs(abs(np.degrees(turned.alignment.params[1] - upright.alignment.params[1])) - 30) < 4
    diff = (turned.image - upright.image).abs()[:, 30:100, 30:100].mean()
    assert diff < 0.06  # the same face in the crop


def test_similarity_fit_is_exact_for_similar_points():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2)) * 50
    m = Alignment.from_params(1.7, 0.4, 12.0, -3.0, 128).matrix
    dst = src @ m[:, :2].T + m[:, 2]
    assert np.allclose(fit_similarity(src, dst), m, atol=1e-9)


def test_smoothing_removes_jitter_but_follows_motion(photo):
    face = find_faces(photo)[0]
    base = align_landmarks(face, 128)
    rng = np.random.default_rng(0)
    seq, truth = [], []
    for k in range(40):
        s, a, tx, ty = base.params
        drift = 0.5 * k  # a slow pan of half a crop pixel per frame
        truth.append(tx + drift)
        seq.append(Alignment.from_params(s, a + rng.normal(0, 0.01), tx + drift + rng.normal(0, 1.0), ty, 128))
    smooth = smooth_alignments(seq, 5)
    raw_err = np.std([al.params[2] - t for al, t in zip(seq, truth)][3:-3])
    smooth_err = np.std([al.params[2] - t for al, t in zip(smooth, truth)][3:-3])
    assert smooth_err < 0.6 * raw_err


def test_no_face_modes():
    flat = np.full((200, 300, 3), 127, np.uint8)
    with pytest.raises(PortraitError, match="whole"):
        prepare_portrait(flat, 128, mode="face")
    p = prepare_portrait(flat, 128, mode="auto")
    assert p.face_box is None and p.landmarks is None and "no face found" in p.notes[-1]
    corners = p.alignment.crop_corners()
    assert np.allclose(corners[0], [50, 0]) and np.allclose(corners[2], [250, 200])
    with pytest.raises(PortraitError, match="crop mode"):
        prepare_portrait(flat, 128, mode="zoom")


def test_several_faces_use_the_largest(photo):
    import cv2

    small = cv2.resize(photo, (400, 400), interpolation=cv2.INTER_AREA)
    canvas = np.full((560, 940, 3), 200, np.uint8)
    canvas[20:532, 0:512] = photo
    canvas[100:500, 530:930] = small
    p = prepare_portrait(canvas, 128, mode="face")
    assert p.landmarks.mouth_centre()[0] < 512
    assert any("used the largest" in n for n in p.notes)


def test_face_at_the_edge_is_noted_and_never_pastes_invented_pixels(photo):
    cut = np.ascontiguousarray(photo[:230, 160:])  # the chin near the bottom: the crop reaches past the edges
    p = prepare_portrait(cut, 128)
    assert p.valid.min() < 0.5, "the crop should reach past the picture"
    comp = Compositor(p)
    bright = np.full((1, 128, 128, 3), 255, np.uint8)
    out = comp.composite(bright)[0].astype(int)
    changed = np.abs(out - p.source.astype(int)).max(-1) > 0
    mask = face_paste_mask(p, cut.shape[1], cut.shape[0])
    assert not changed[mask == 0].any()  # only inside the face mask, which lies inside the picture
    crop = crop_frames(bright, p)[0]
    assert (crop[p.valid < 0.01] == 0).all()  # the crop video shows black, not smeared edges


def test_paste_back_keeps_every_pixel_outside_the_face_mask(photo):
    p = prepare_portrait(photo, 128)
    comp = Compositor(p, max_size=None)
    assert comp.size == (512, 512)
    frames = torch.rand(3, 128, 128, 3)
    out = comp.composite(frames)
    assert out.shape == (3, 512, 512, 3) and out.dtype == np.uint8
    mask = face_paste_mask(p, 512, 512)
    outside = mask == 0
    assert outside.mean() > 0.6  # the mask follows the face, not a square
    assert (out[:, outside] == p.source[outside]).all()
    inside = mask > 0.99
    assert np.abs(out[:, inside].astype(int) - p.source[inside].astype(int)).mean() > 30  # the noise went in
    # the unchanged crop pasted back reproduces the photo (the warp there and back)
    same = comp.composite(p.image.permute(1, 2, 0)[None])[0].astype(int)
    assert np.abs(same - p.source.astype(int))[inside].mean() < 12


def test_output_size_caps_the_long_side(photo):
    p = prepare_portrait(photo, 128)
    assert output_size(p, 1024) == (512, 512)
    assert output_size(p, 256) == (256, 256)
    wide = prepare_portrait(np.ascontiguousarray(np.concatenate([photo, photo[:, ::-1]], 1)), 128)
    assert output_size(wide, 512) == (512, 256)
    comp = Compositor(wide, 512)
    assert comp.composite(torch.zeros(1, 128, 128, 3)).shape == (1, 256, 512, 3)


def test_a_face_without_landmarks_is_pasted_where_the_face_is_whatever_the_framing(photo):
    """The Haar fallback's paste mask (no landmarks: an ellipse around the face box) is the same face
    region in a whole-face crop and in a lower-face one, inside the part the lower-face crop covers."""
    import cv2
    import dataclasses

    from llia_core.config import get_config

    masks = []
    for view in (framing.FACE, get_config("real-lower").framing):
        p = dataclasses.replace(prepare_portrait(photo, 128, view=view), landmarks=None)
        masks.append(face_paste_mask(p, *p.source_size))
    inside = np.zeros_like(masks[1])
    cv2.fillConvexPoly(inside, np.round(p.alignment.crop_corners()).astype(np.int32), 1.0)
    inside = cv2.erode(inside, np.ones((15, 15), np.uint8)) > 0  # away from the lower crop's edges
    assert inside.sum() > 2000 and masks[1][inside].mean() > 0.3
    assert np.abs(masks[0] - masks[1])[inside].max() < 0.05
