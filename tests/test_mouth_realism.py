"""The mouth-realism measures: a classifier that tells what differs and only that, shares that count
what they say, crops that follow the face."""

import numpy as np
import pytest

from llia_core.evaluation.mouth_realism import (CROP_H, CROP_W, OPEN_GAP, crop_features, interior_shares,
                                                leave_one_person_out, matched_shares, mouth_crops)


def _mouths(rng, n, tone, blur=0.0):
    """n mouth-like crops of one person: skin of ``tone``, a dark opening with a bright band; ``blur``
    softens them (a generator that paints a blurred mouth)."""
    import cv2

    out = []
    for _ in range(n):
        img = np.full((CROP_H, CROP_W, 3), tone, np.float32) + rng.normal(0, 6, (CROP_H, CROP_W, 3))
        h = int(rng.integers(6, 14))
        y0, x0 = 18, int(rng.integers(14, 20))
        img[y0:y0 + h, x0:CROP_W - x0] = 30 + rng.normal(0, 8, (h, CROP_W - 2 * x0, 3))
        img[y0:y0 + 3, x0 + 4:CROP_W - x0 - 4] = 225 + rng.normal(0, 5, (3, CROP_W - 2 * x0 - 8, 3))
        if blur:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def test_the_classifier_tells_blurred_mouths_from_sharp_ones_on_people_it_never_saw():
    rng = np.random.default_rng(0)
    tones = [(200, 150, 130), (120, 80, 60), (230, 190, 170), (170, 120, 90), (90, 60, 50)]
    different = {f"p{i}": (crop_features(_mouths(rng, 30, t)), crop_features(_mouths(rng, 30, t, blur=1.5)))
                 for i, t in enumerate(tones)}
    same = {f"p{i}": (crop_features(_mouths(rng, 30, t)), crop_features(_mouths(rng, 30, t)))
            for i, t in enumerate(tones)}
    acc_different = leave_one_person_out(different)
    acc_same = leave_one_person_out(same)
    assert set(acc_different) == set(different) and min(acc_different.values()) > 0.9
    assert 0.3 < np.mean(list(acc_same.values())) < 0.7  # nothing to tell: chance


def test_interior_shares_count_teeth_and_dark_pixels_inside_the_lips_only():
    crop = np.full((CROP_H, CROP_W, 3), (190, 140, 120), np.uint8)
    mask = np.zeros((CROP_H, CROP_W), bool)
    mask[20:30, 10:50] = True
    crop[20:25, 10:50] = 235  # teeth: bright, no colour
    crop[25:30, 10:50] = 20  # the dark inside
    crop[0:5] = 255  # bright pixels outside the lips do not count
    teeth, dark = interior_shares(crop[None], mask[None])
    assert teeth[0] == pytest.approx(0.5) and dark[0] == pytest.approx(0.5)
    closed = interior_shares(crop[None], np.zeros_like(mask)[None])
    assert np.isnan(closed[0][0]) and np.isnan(closed[1][0])


def test_matched_shares_compare_at_the_same_openings():
    gaps = np.array([0.05, 0.05, 0.1, 0.2])
    real = (gaps, np.array([0.1, 0.1, 0.2, 0.4]), np.array([0.3, 0.3, 0.3, 0.3]))
    gen = (np.array([0.05, 0.2, 0.2]), np.array([0.05, 0.1, 0.1]), np.array([0.6, 0.3, 0.3]))
    out = matched_shares(real, gen)
    assert [b["gap"] for b in out["bins"]] == ["0.04-0.08", "0.14-1.00"]  # no generated frame at 0.08-0.14
    assert out["teeth_ratio_range"] == pytest.approx([0.25, 0.5])
    assert out["teeth_ratio"] == pytest.approx((2 * 0.05 + 1 * 0.1) / (2 * 0.1 + 1 * 0.4))
    assert out["dark_ratio_range"] == pytest.approx([1.0, 2.0])


def test_mouth_crops_follow_the_face_and_see_an_opened_mouth():
    """The astronaut with her mouth opened by the paste-back's warp: the mesh reads it open, the crop's
    inner-lip mask covers the opening and it is darker than her skin."""
    import torch

    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.evaluation.real import mouth_track
    from llia_core.models.mouth_warp import warp_pixels
    from llia_core.portrait import Compositor, prepare_portrait

    p = prepare_portrait(str(DEFAULT_PORTRAIT), 128)
    comp = Compositor(p, None)
    shapes = np.array([[0.0, 0.5, 0.0], [1.0, 0.5, 0.0]], np.float32)
    crops = warp_pixels(p.image[None].expand(2, -1, -1, -1).float(), torch.from_numpy(shapes), p.view,
                        p.mouth_anchor[None]).permute(0, 2, 3, 1).numpy()
    frames = comp.composite(crops, shapes)
    _, faces = mouth_track(frames)
    crops, gaps, inner = mouth_crops(frames, faces)
    assert crops.shape == (2, CROP_H, CROP_W, 3)
    assert gaps[0] < OPEN_GAP < gaps[1] and inner[0].sum() < inner[1].sum() and inner[1].sum() > 40
    luma = crops[1].astype(float) @ [0.299, 0.587, 0.114]
    assert luma[inner[1]].mean() < 0.7 * np.median(luma[~inner[1]])
    assert abs(np.argwhere(inner[1]).mean(0)[1] - CROP_W / 2) < 4  # the crop is centred on the mouth


@pytest.mark.parametrize("upper_share", [0.0, 0.35, 0.6])
def test_the_jaw_slope_reads_the_chins_drop_per_unit_of_gap_whoever_moves_the_lips(upper_share):
    """A face whose chin drops 0.7 of the lip gap reads 0.7 whether the upper lip rises or stays (an
    alignment that pins the mouth centre read less the more the lower lip moved), and whatever the
    head's turn, size and place in each frame; a chin that stays reads 0; too few frames read nan."""
    from llia_core.evaluation.mouth_realism import jaw_slope_of_points
    from llia_core.portrait.landmarks import CHIN, EYE_A, EYE_B, LIP_INNER_DOWN, LIP_INNER_UP, NOSE_TIP

    rng = np.random.default_rng(0)
    base = rng.uniform(-1, 1, (468, 2))
    base[list(EYE_A)], base[list(EYE_B)] = (-0.35, -0.3), (0.35, -0.3)
    base[NOSE_TIP], base[LIP_INNER_UP], base[LIP_INNER_DOWN], base[CHIN] = (0, 0.05), (0, 0.3), (0, 0.3), (0, 0.75)

    def frames(chin_share):
        out = []
        for gap in np.linspace(0, 0.2, 12):
            xy = base.copy()
            xy[LIP_INNER_UP, 1] -= upper_share * gap
            xy[LIP_INNER_DOWN, 1] += (1 - upper_share) * gap
            xy[CHIN, 1] += chin_share * gap
            a, s, t = rng.uniform(-0.3, 0.3), rng.uniform(80, 300), rng.uniform(0, 500, 2)
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            out.append(xy @ rot.T * s + t)
        return out

    assert jaw_slope_of_points(frames(0.7)) == pytest.approx(0.7, abs=1e-6)
    assert jaw_slope_of_points(frames(0.0)) == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(jaw_slope_of_points(frames(0.7)[:9]))
