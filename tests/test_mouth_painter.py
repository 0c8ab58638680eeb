"""The mouth painter: its window follows the face, it paints only the opening, it learns a mouth's
inside, and the paste-back uses it only where the mouth is open."""

import math

import numpy as np
import pytest
import torch

from llia_core import framing
from llia_core.models.mouth_painter import SIZE, WINDOW, MouthPainter, feathered, units_to_window, window_matrix


def test_the_window_holds_the_same_face_box_units_whatever_the_alignment():
    from llia_core.portrait.align import Alignment

    rng = np.random.default_rng(0)
    units = np.array([[0.0, 0.55], [-0.3, 0.5], [0.3, 0.5], [0.0, 0.9], [WINDOW[0], WINDOW[1]]])
    for resolution, view in ((128, framing.FACE), (256, framing.Framing(0.68, 0.68))):
        for _ in range(4):
            al = Alignment.from_params(rng.uniform(0.2, 2.0), rng.uniform(-0.4, 0.4), rng.uniform(-50, 50),
                                       rng.uniform(-50, 50), resolution)
            source = al.to_source(view.to_pixels(units, resolution))
            m = window_matrix(source_to_crop=al.matrix, resolution=resolution, view=view)
            assert np.allclose(source @ m[:, :2].T + m[:, 2], units_to_window(units), atol=1e-6)
            assert np.allclose(window_matrix(al.inverse, resolution=resolution, view=view), m)
    assert np.allclose(units_to_window([[WINDOW[2], WINDOW[3]]]), [SIZE])  # the far corner


def test_the_painter_changes_nothing_outside_the_opening():
    torch.manual_seed(0)
    net = MouthPainter().eval()
    w, h = SIZE
    window, reference = torch.rand(2, 3, h, w) * 2 - 1, torch.rand(2, 3, h, w) * 2 - 1
    hard = torch.zeros(2, 1, h, w)
    hard[:, :, 30:40, 30:66] = 1
    mask = feathered(hard)
    assert mask[:, :, 30:40, 30:66].min() > 0.99 and mask[:, :, :20].max() == 0  # grown by a pixel, soft past it
    drawn = (torch.rand(2, 3, h, w) * 2 - 1) * hard
    with torch.no_grad():
        out = net(window, hard, reference, drawn)
    outside = (mask == 0).expand_as(out)
    assert torch.equal(out[outside], window[outside])
    inside = hard.expand_as(out) > 0
    assert torch.equal(out[inside], drawn[inside])  # untrained, it paints the drawing
    torch.nn.init.normal_(net.out.weight, std=0.05)
    with torch.no_grad():
        trained = net(window, hard, reference, drawn)
        assert torch.equal(net(window, hard, reference, drawn), trained)  # deterministic: no shimmer from noise
    assert torch.equal(trained[outside], window[outside]) and (trained - drawn).abs()[inside].mean() > 0.01


def test_the_drawn_opening_is_dark_in_the_middle_with_teeth_under_the_upper_lip():
    from llia_core.models.mouth_painter import drawn_opening

    w, h = SIZE
    window = np.empty((h, w, 3), np.float32)
    window[:] = (200, 150, 130)
    window[24:48, 20:76] = (170, 50, 60)  # lips
    opening = np.zeros((h, w), bool)
    assert not drawn_opening(window, opening).any()
    opening[30:42, 26:70] = True
    out = drawn_opening(window, opening)
    assert not out[~opening].any()
    luma = out @ np.array([0.299, 0.587, 0.114])
    assert luma[31, 48] > 1.5 * luma[36, 48]  # teeth under the upper lip, brighter than the middle
    assert luma[36, 48] < 0.5 * (np.array([170, 50, 60]) @ [0.299, 0.587, 0.114])  # the middle is dark
    assert luma[36, 27] < luma[31, 48]  # no teeth at the corners


SMALL = (8, 16, 32)  # a narrower painter: the test's training in seconds


def _mouth_windows(n: int, seed: int):
    """Synthetic windows: skin, red lips around an opening whose inside is dark with a band of teeth
    under the upper lip; each of another skin tone and opening."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = SIZE
    crops, polys, gaps = [], [], []
    for _ in range(n):
        skin = rng.uniform(90, 230, 3)
        img = np.empty((h, w, 3), np.float32)
        img[:] = skin
        gap = rng.uniform(6, 18)
        cx, cy, half = w / 2 + rng.uniform(-3, 3), 30 + rng.uniform(-2, 2), rng.uniform(24, 32)
        t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        poly = np.stack([cx + half * np.cos(t), cy + gap / 2 * np.sin(t)], 1).astype(np.float32)
        cv2.ellipse(img, (int(cx), int(cy)), (int(half + 5), int(gap / 2 + 6)), 0, 0, 360, (170, 60, 60), -1)
        inside = np.zeros((h, w), np.uint8)
        cv2.fillPoly(inside, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
        img[inside > 0] = 25
        band = (inside > 0) & (np.arange(h)[:, None] < cy - gap / 2 + 4)
        img[band] = 235
        crops.append(np.clip(img, 0, 255).astype(np.uint8))
        polys.append(poly)
        gaps.append(gap / 100)
    crops = np.stack(crops)
    return crops, np.stack(polys), np.array(gaps, np.float32)


def test_the_painter_learns_the_inside_of_a_mouth_it_never_saw(tmp_path):
    """Trained on some synthetic faces, it paints a held-out face's opening dark with the band of teeth
    where the band is, much closer than the drawing it starts from; the checkpoint resumes."""
    from llia_core.training.painter_train import PainterBatches, painter_loss, train_painter

    crops, polys, gaps = _mouth_windows(48, 0)
    data = tmp_path / "windows.npz"
    np.savez(data, crops=crops, polys=polys, gaps=gaps, video=np.arange(48) % 12,
             refs=np.stack([crops[np.arange(48) % 12 == v][:2] for v in range(12)]),
             names=np.array([f"v{v}" for v in range(12)]), people=np.array([f"p{v}" for v in range(12)]))
    held = tmp_path / "held.npz"
    c2, p2, g2 = _mouth_windows(8, 1)
    np.savez(held, crops=c2, polys=p2, gaps=g2 + 0.05, video=np.zeros(8, np.int32), refs=c2[None, :2],
             names=np.array(["h"]), people=np.array(["h"]))
    test = PainterBatches(str(held)).sample(8, augment=False, index=np.arange(8))
    torch.manual_seed(0)
    with torch.no_grad():
        before = float(painter_loss(MouthPainter(SMALL)(*test), test[0], test[1]))
    ck = tmp_path / "painter.pt"
    train_painter(str(data), str(ck), steps=60, batch=12, lr=4e-3, save_every=60, channels=SMALL, log=lambda m: None)
    net = train_painter(str(data), str(ck), steps=200, batch=12, lr=4e-3, save_every=200, channels=SMALL,
                        log=lambda m: None)
    assert torch.load(ck, weights_only=True)["step"] == 200
    with torch.no_grad():
        painted = net(*test)
    assert float(painter_loss(painted, test[0], test[1])) < 0.5 * before
    luma = ((painted + 1) * 127.5).mean(1)  # (8, H, W)
    hard = torch.from_numpy(PainterBatches(str(held)).masks(p2)) > 0
    for k in range(8):
        rows = torch.nonzero(hard[k].any(1)).ravel()
        top, mid = luma[k, rows[0] + 1], luma[k, (rows[0] + rows[-1]) // 2 + 2]
        inside_top, inside_mid = top[hard[k, rows[0] + 1]], mid[hard[k, (rows[0] + rows[-1]) // 2 + 2]]
        assert inside_top.mean() > inside_mid.mean() + 40  # teeth over the dark


def test_the_paste_back_paints_open_mouths_only_and_keeps_the_picture_elsewhere():
    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.models.mouth_warp import warp_pixels
    from llia_core.portrait import Compositor, prepare_portrait

    torch.manual_seed(0)
    painter = MouthPainter().eval()
    p = prepare_portrait(str(DEFAULT_PORTRAIT), 128)
    plain, painted = Compositor(p, 512, interior_shade=0.0, teeth=False), Compositor(p, 512, painter=painter)
    assert painted.teeth_colour is None and painted.interior_shade == 0  # the painter replaces the drawn inside
    shapes = np.array([[0.0, 0.5, 0.0], [0.8, 0.5, 0.0]], np.float32)
    crops = warp_pixels(p.image[None].expand(2, -1, -1, -1).float(), torch.from_numpy(shapes), p.view,
                        p.mouth_anchor[None]).permute(0, 2, 3, 1).numpy()
    a, b = plain.composite(crops, shapes), painted.composite(crops, shapes)
    assert np.array_equal(a[0], b[0])  # a closed mouth: nothing painted
    diff = np.abs(a[1].astype(int) - b[1].astype(int)).max(-1) > 0
    assert diff.sum() > 200
    # only inside the opening the warp made (its depth map, a few pixels wider)
    (rows, cols), _, _ = painted._grids()[0]
    depth = painted._warp_maps(shapes[1])["box"][2] > 0
    x0, y0, _, _ = painted.box
    opening = np.zeros(diff.shape, bool)
    opening[y0 + rows.start:y0 + rows.start + depth.shape[0], x0 + cols.start:x0 + cols.start + depth.shape[1]] = depth
    import cv2

    near = cv2.dilate(opening.astype(np.uint8), np.ones((17, 17), np.uint8)) > 0  # grown by GROW window pixels
    assert not (diff & ~near).any()
    assert np.array_equal(painted.composite(crops, shapes)[1], b[1])  # the same mouth is painted the same


def test_a_model_with_a_painter_saves_loads_and_keeps_it_float32(tmp_path):
    import dataclasses

    from llia_core.checkpoints import load_model
    from llia_core.config import MouthPainterConfig, get_config
    from llia_core.models import LLIAModel

    torch.manual_seed(0)
    cfg = dataclasses.replace(get_config("real"), mouth_painter=MouthPainterConfig())
    model = LLIAModel(cfg)
    model.save_pretrained(tmp_path / "m.safetensors")
    back = load_model(str(tmp_path / "m.safetensors"))
    assert back.config.mouth_painter == MouthPainterConfig()
    for (k, v), (k2, v2) in zip(model.mouth_painter.state_dict().items(), back.mouth_painter.state_dict().items()):
        assert k == k2 and torch.allclose(v, v2, atol=1e-3)
    half = back.to(torch.bfloat16)
    assert next(half.mouth_painter.parameters()).dtype == torch.float32
    assert next(half.denoiser.parameters()).dtype == torch.bfloat16
    assert math.isclose(sum(p.numel() for p in back.mouth_painter.parameters()) * 4 / 2 ** 20, 0.6, abs_tol=0.1)


@pytest.mark.parametrize("name,expect", [("s1__bbaf2n", "grid/s1/bbaf2n.mp4"), ("lrs2_00001", "talking/lrs2_00001.mp4")])
def test_a_tracks_video_is_found_from_its_name(tmp_path, name, expect):
    from llia_core.training.painter_data import video_for

    for rel in ("grid/s1/bbaf2n.mp4", "talking/lrs2_00001.mp4", "talking/lrs2_00001.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert video_for(tmp_path / f"{name}.npz", [tmp_path / "talking", tmp_path / "grid"]) == tmp_path / expect


def test_a_tracked_video_gives_windows_whose_openings_lie_on_the_dark_of_the_mouth(tmp_path):
    """The astronaut opening her mouth (the paste-back's drawn opening), written as a video and tracked:
    every frame gives a window, the mesh's inner lip line covers pixels much darker than the skin when
    the mouth is open, the gaps grow with the opening, and the references are the most closed mouths.
    Then ``train --stage painter`` on that folder (the route a GPU run takes): windows cut, the painter
    trained at the widths asked for, and a model written whose painter has learned (its last layer starts
    at zero); widths that are not three numbers are refused."""
    import cv2

    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.models.mouth_warp import warp_pixels
    from llia_core.portrait import Compositor, prepare_portrait
    from llia_core.training.data.tracks import save_track, track_video
    from llia_core.training.painter_data import REFERENCES, windows_of
    from llia_core.video_io import write_mp4

    p = prepare_portrait(str(DEFAULT_PORTRAIT), 128)
    comp = Compositor(p, None)  # the photo's 512 px: a mouth over 30 px wide (MIN_MOUTH_PX)
    openings = np.array([0.0, 0.0, 0.3, 0.6, 0.9, 0.9, 0.6, 0.3, 0.0, 0.0], np.float32)
    shapes = np.stack([openings, np.full_like(openings, 0.5), np.zeros_like(openings)], 1)
    crops = warp_pixels(p.image[None].expand(len(shapes), -1, -1, -1).float(), torch.from_numpy(shapes), p.view,
                        p.mouth_anchor[None].expand(len(shapes), -1)).permute(0, 2, 3, 1).numpy()
    video = write_mp4(tmp_path / "astronaut.mp4", comp.composite(crops, shapes), 25, audio=np.zeros(6400, np.float32))
    track = tmp_path / "astronaut.npz"
    save_track(track, track_video(video))
    out = windows_of(track, video)
    assert out["crops"].shape == (10, SIZE[1], SIZE[0], 3) and out["polys"].shape == (10, 20, 2)
    assert out["gaps"][4] > out["gaps"][2] > out["gaps"][0] + 0.02
    assert out["refs"].shape[0] == REFERENCES and np.abs(out["refs"][0].astype(int) - out["crops"][0]).mean() < 3
    mask = np.zeros(SIZE[::-1], np.uint8)
    cv2.fillPoly(mask, [np.round(out["polys"][4]).astype(np.int32)], 1)
    luma = out["crops"][4].astype(float) @ [0.299, 0.587, 0.114]
    assert mask.sum() > 60 and luma[mask > 0].mean() < 0.6 * np.median(luma[mask == 0])

    import json

    from llia_core.checkpoints import load_model
    from llia_core.training.trainer import TrainConfig, train

    out_dir = tmp_path / "painter"
    final = train(TrainConfig(stage="painter", config="real", data=str(tmp_path), videos=str(tmp_path), steps=4,
                              save_every=4, lr=1e-3, threads=1, device="auto", out_dir=str(out_dir), progress=False,
                              painter_channels="8,8,16"))
    windows = np.load(out_dir / "painter_windows.npz")
    assert len(windows["gaps"]) == 10 and list(windows["people"]) == ["astronaut"]
    assert torch.load(out_dir / "painter.pt", weights_only=True)["step"] == 4
    model = load_model(str(final))
    assert model.mouth_painter is not None and model.mouth_painter.out.weight.abs().sum() > 0
    assert tuple(model.config.mouth_painter.channels) == (8, 8, 16) and model.mouth_painter.out.in_channels == 8
    assert json.loads((out_dir / "painter.json").read_text())["people"] == ["astronaut"]
    from llia_core.errors import LLIAError

    with pytest.raises(LLIAError, match="other widths"):  # resuming at other widths: said, not torch's error
        train(TrainConfig(stage="painter", config="real", data=str(tmp_path), videos=str(tmp_path), steps=8,
                          out_dir=str(out_dir), progress=False, painter_channels="16,16,16"))
    with pytest.raises(LLIAError, match="three widths"):
        train(TrainConfig(stage="painter", config="real", data=str(tmp_path), videos=str(tmp_path), steps=4,
                          out_dir=str(out_dir), progress=False, painter_channels="32,64"))
