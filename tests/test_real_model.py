"""The real-people model's parts: the mouth warp, the closed-form mouth head, detail-preserving
paste-back, still clips from photos."""

import numpy as np
import pytest
import torch

from llia_core import framing
from llia_core.framing import FACE
from llia_core.config import get_config
from llia_core.models import LLIAModel
from llia_core.models.mouth_warp import mouth_source, warp_grid, warp_patch_latent, warp_pixels
from llia_core.states import IDLE, LISTENING, SPEAKING


def _grid(n=97, span=1.8):
    axis = torch.linspace(-span, span, n)
    return axis[None, None, :].expand(1, n, n).clone(), axis[None, :, None].expand(1, n, n).clone()


def test_a_shut_neutral_mouth_is_the_identity_and_far_points_never_move():
    x, y = _grid()
    sx, sy = mouth_source(x, y, torch.tensor([[0.0, 0.5, 0.0]]))
    assert torch.equal(sx, x) and torch.equal(sy, y)
    sx, sy = mouth_source(x, y, torch.tensor([[1.0, 1.0, 0.0]]))
    far = (y < 0.0) | (y > 1.6) | (x.abs() > 1.3)  # eyes and forehead, below the chin, beside the cheeks
    assert torch.allclose(sx[far], x[far]) and torch.allclose(sy[far], y[far])


def test_the_opening_is_a_lens_of_one_colour_that_closes_at_the_corners():
    x, y = _grid(181)
    mouth = torch.tensor([[1.0, 0.5, 0.0]])
    sx, sy = mouth_source(x, y, mouth)
    inside = (sx == 0.0) & (sy == framing.MOUTH_CENTRE_Y)  # reads the middle of the lip line
    rows = inside[0].sum(0)  # opening height per column
    mid, corner = 90, 90 + int(0.24 / (3.6 / 180))
    assert rows[mid] >= 0.2 / (3.6 / 180) and rows[mid] > 2 * rows[corner] and rows[90 + 20] == 0


def test_the_jaw_drops_with_the_opening_and_the_map_never_folds():
    y = torch.linspace(-1.8, 1.8, 721)[None, :]
    x = torch.zeros_like(y)
    below = (y > framing.MOUTH_CENTRE_Y + 0.2) & (y < framing.MOUTH_CENTRE_Y + 0.4)
    shifts = []
    for o in (0.25, 0.5, 1.0):
        _, sy = mouth_source(x, y, torch.tensor([[o, 0.5, 0.0]]))
        assert (sy[:, 1:] - sy[:, :-1] >= -1e-6).all()  # monotonic down the face: no fold
        shifts.append(float((y - sy)[below].mean()))  # points under the lips read from higher up
    assert 0 < shifts[0] < shifts[1] < shifts[2]
    assert shifts[2] == pytest.approx(0.65 * 0.26, rel=0.05)  # the lower lip drops 0.65 of the gap
    xs = torch.linspace(-1.8, 1.8, 721)[None, :]
    for w, rnd in ((1.0, 0.0), (0.0, 1.0)):
        for row in (framing.MOUTH_CENTRE_Y - 0.1, framing.MOUTH_CENTRE_Y + 0.2):  # the lips, outside the opening
            sx, _ = mouth_source(xs, torch.full_like(xs, row), torch.tensor([[0.6, w, rnd]]))
            assert (sx[:, 1:] - sx[:, :-1] > 0).all()


def test_the_warp_follows_the_portraits_own_mouth_anchor():
    x, y = _grid()
    mouth = torch.tensor([[1.0, 0.5, 0.0]])
    _, sy0 = mouth_source(x, y, mouth)
    _, sy1 = mouth_source(x, y, mouth, torch.tensor([0.0, framing.MOUTH_CENTRE_Y + 0.2, 1.0]))
    # the same displacement, 0.2 units lower
    d0, d1 = (y - sy0)[0], (y - sy1)[0]
    step = float(y[0, 1, 0] - y[0, 0, 0])
    k = round(0.2 / step)
    assert torch.allclose(d1[k:], d0[:-k], atol=0.02)


def test_patch_latent_warp_is_exact_at_rest_and_moves_only_the_lower_face():
    lat = torch.rand(2, 48, 32, 32)
    still = warp_patch_latent(lat, torch.tensor([[0.0, 0.5, 0.0]] * 2), FACE, 4)
    assert torch.allclose(still, lat, atol=2e-5)  # grid arithmetic in float32
    px = torch.rand(1, 3, 128, 128)
    moved = warp_pixels(px, torch.tensor([[1.0, 0.5, 0.0]]), FACE)
    diff = (moved - px).abs().sum(1)[0]
    rows = diff.sum(1)
    lip = int(framing.FACE.to_pixels([[0, framing.MOUTH_CENTRE_Y]], 128)[0, 1])
    assert rows[:lip - 16].max() < 1e-3 and rows[lip:lip + 20].min() > 0  # the upper lip rises by little
    assert warp_grid(torch.zeros(3, 3), 16, FACE).shape == (3, 16, 16, 2)


def _inputs(model, b=1, f=3, states=SPEAKING):
    cfg = model.config
    c, h, r = cfg.autoencoder.latent_channels, cfg.latent_size, cfg.resolution
    torch.manual_seed(0)
    ref = model.encode_pixels(torch.rand(b, 3, r, r))
    d = cfg.audio.num_tokens
    return dict(sample=torch.randn(b, c, f, h, h), timestep=torch.tensor(500),
                audio_windows=torch.randn(b, f, d, cfg.audio.mel_per_token * cfg.audio.n_mels),
                states=torch.full((b, f), states), reference_latent=ref, reference_bank=model.reference_net(ref),
                face_mask=torch.ones(b, 1, r, r), motion_flags=torch.zeros(b, f))


@torch.no_grad()
@pytest.mark.parametrize("name", ["real", "real-lower"])
def test_an_untrained_warp_model_predicts_the_warped_portrait_and_shuts_the_mouth_outside_speech(name):
    model = LLIAModel(get_config(name)).eval()
    mouth = torch.tensor([[[0.8, 0.5, 0.0]] * 3])
    args = _inputs(model)
    out = model.denoiser(**args, mouth=mouth)
    want = warp_patch_latent(args["reference_latent"], mouth[0, :1], model.config.framing, 4, None,
                             model.config.opening_light)
    assert torch.allclose(out[0, :, 0], want[0], atol=1e-4)
    assert not torch.allclose(out[0, :, 0], args["reference_latent"][0], atol=1e-3)
    # outside speech the mouth model's shapes are gated to the portrait's own mouth: shut
    with torch.no_grad():
        model.mouth_model.head[-1].bias[:3] = torch.tensor([0.9, 0.5, 0.0])
    from llia_core.audio import encode_audio

    audio = encode_audio((torch.randn(16000) * 0.1, 16000), 25.0)
    frames = torch.arange(3)
    for state in (LISTENING, IDLE):
        shapes = model.mouth_shapes(audio, frames, torch.full((3,), state))
        assert torch.equal(shapes, torch.tensor([[0.0, 0.5, 0.0]] * 3))
        args = _inputs(model, states=state)
        out = model.denoiser(**args, mouth=shapes[None])
        assert torch.allclose(out[0, :, 1], args["reference_latent"][0], atol=1e-4)
    speaking = model.mouth_shapes(audio, frames, torch.full((3,), SPEAKING))
    assert (speaking[:, 0] > 0.5).all()
    with pytest.raises(ValueError, match="mouth model"):  # the denoiser cannot make them itself
        model.denoiser(**_inputs(model))


def _portrait():
    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.portrait import prepare_portrait

    return prepare_portrait(str(DEFAULT_PORTRAIT), 128)


def test_the_lower_face_models_warp_starts_an_open_mouth_from_a_dark_cavity_whatever_the_lipstick():
    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.models.mouth_warp import darken_opening, opening_depth
    from llia_core.portrait import prepare_portrait

    cfg = get_config("real-lower")
    p = prepare_portrait(str(DEFAULT_PORTRAIT), 128, view=cfg.framing)
    mouth = torch.tensor([[0.9, 0.5, 0.0]])
    plain = warp_pixels(p.image[None].float(), mouth, cfg.framing, p.mouth_anchor[None])
    dark = darken_opening(plain, mouth, cfg.framing, cfg.opening_light, p.mouth_anchor[None])
    xs, ys = cfg.framing.axes(128)
    depth = opening_depth(xs[None, None, :], ys[None, :, None], mouth, p.mouth_anchor[None])[0]
    deep, outside = depth > 0.5, depth == 0
    assert deep.sum() > 100 and torch.equal(dark[0][:, outside], plain[0][:, outside])
    assert torch.allclose(dark[0][:, deep], plain[0][:, deep] * cfg.opening_light)
    assert get_config("real").opening_light == 1.0  # the bundled model's warp is unchanged


def test_paste_back_keeps_the_photos_own_detail_and_warps_it_at_full_resolution():
    from llia_core.portrait import Compositor

    p = _portrait()
    comp = Compositor(p, None)
    same = comp.composite(p.image.permute(1, 2, 0)[None].numpy())[0]
    # the model changed nothing: the full-resolution photo comes back, every pixel within rounding
    assert np.abs(same.astype(int) - comp.background.astype(int)).max() <= 1
    lips = framing.FACE.to_pixels([[0, framing.MOUTH_CENTRE_Y + 0.15], [0, -0.31]], 128)
    src = p.alignment.to_source(lips) * [comp.width / p.source_size[0], comp.height / p.source_size[1]]
    (mx, my), (ex, ey) = np.round(src).astype(int)
    ref = comp.reference_for(np.array([1.0, 0.5, 0.0])) / 255
    opened = comp.composite(ref[None], np.array([[1.0, 0.5, 0.0]]))[0]
    d = np.abs(opened.astype(int) - comp.background.astype(int)).sum(-1)
    assert d[my - 3:my + 4, mx - 3:mx + 4].mean() > 10  # the lower lip moved
    assert d[ey - 3:ey + 4, ex - 8:ex + 8].max() <= 3  # the eyes did not
    import cv2

    sharp = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()  # noqa: E731
    x0, y0, x1, y1 = comp.box
    assert sharp(opened[y0:y1, x0:x1]) > 0.8 * sharp(comp.background[y0:y1, x0:x1])


def test_an_open_mouth_is_dark_inside_and_the_lips_keep_their_colour():
    from llia_core.models.mouth_warp import opening_depth
    from llia_core.portrait import Compositor

    p = _portrait()
    mouth = np.array([[0.9, 0.5, 0.0]])
    shaded, flat = Compositor(p, None), Compositor(p, None, interior_shade=0.0)
    ref = shaded.reference_for(mouth[0]) / 255  # the model painted nothing over the warp
    a, b = (c.composite(ref[None], mouth)[0].astype(float) for c in (shaded, flat))
    inside = framing.FACE.to_pixels([[float(p.mouth_anchor[0]), float(p.mouth_anchor[1]) + 0.05]], 128)
    (x, y), = np.round(p.alignment.to_source(inside)).astype(int)
    assert a[y - 1:y + 2, x - 2:x + 3].mean() < 0.5 * b[y - 1:y + 2, x - 2:x + 3].mean()  # dark inside
    far = np.abs(a - b).sum(-1) > 0
    ys, _ = np.nonzero(far)
    assert far.any() and ys.min() > y - 0.15 * p.source_size[1]  # only the opening changed
    xs = torch.linspace(-0.5, 0.5, 201)[None, None, :]
    depth = opening_depth(xs, torch.full_like(xs, framing.MOUTH_CENTRE_Y), torch.tensor([[1.0, 0.5, 0.0]]))
    assert depth.max() <= 1 and depth[0, 0, 0] == 0 and depth[0, 0, 100] > 0.5  # deepest in the middle
    assert opening_depth(xs, xs * 0, torch.tensor([[0.0, 0.5, 0.0]])).abs().max() == 0  # closed: none


def _source_pixel(p, x, y):
    (px, py), = np.round(p.alignment.to_source(framing.FACE.to_pixels([[x, y]], 128))).astype(int)
    return px, py


def test_an_open_mouth_shows_upper_teeth_in_the_pictures_light():
    from llia_core.models.mouth_warp import GAP_AT_OPEN, TEETH_HEIGHT, UPPER_SHARE, upper_teeth
    from llia_core.portrait import Compositor

    p = _portrait()
    ax, ay, s = (float(v) for v in p.mouth_anchor)
    mouth = np.array([[0.9, 0.5, 0.0]])
    gap = 0.9 * GAP_AT_OPEN
    top = ay - UPPER_SHARE * gap  # the upper lip's inner edge in the middle
    band = min(0.4 * gap, TEETH_HEIGHT * s)
    ys = torch.tensor([top + 0.4 * band, ay + 0.3 * gap, top - 0.02])  # teeth, the dark middle, the lip
    cover, light = upper_teeth(torch.full_like(ys, ax)[None], ys[None], torch.tensor(mouth, dtype=torch.float32),
                               p.mouth_anchor[None])
    assert cover[0, 0] > 0.9 and cover[0, 1] == 0 and cover[0, 2] == 0 and 0.6 < light[0, 0] <= 1
    for slit in (0.0, 0.05):  # closed, or barely parted: no teeth
        assert upper_teeth(torch.full_like(ys, ax)[None], ys[None], torch.tensor([[slit, 0.5, 0.0]]),
                           p.mouth_anchor[None])[0].max() < 0.05
    with_teeth, without = Compositor(p, None), Compositor(p, None, teeth=False)
    ref = with_teeth.reference_for(mouth[0]) / 255
    a, b = (c.composite(ref[None], mouth)[0].astype(float) for c in (with_teeth, without))
    (tx, ty), (cx, cy) = _source_pixel(p, ax, float(ys[0])), _source_pixel(p, ax, float(ys[1]))
    teeth, cavity = a[ty, tx - 3:tx + 4].mean(0), a[cy - 1:cy + 2, cx - 3:cx + 4].mean((0, 1))
    assert teeth.mean() > 2.5 * cavity.mean() and teeth.mean() > b[ty, tx - 3:tx + 4].mean() + 40
    # the inside is the lips' red, darkened: this photo's lip line (a grin closed by the template) drew it grey-blue
    assert cavity[0] > 1.2 * cavity[2] and with_teeth.mouth_colour[0] > with_teeth.mouth_colour[2] + 30
    np.testing.assert_allclose(teeth, with_teeth.teeth_colour * float(light[0, 0]), atol=25)
    assert np.abs(a - b).sum(-1)[cy - 1:cy + 2, cx - 3:cx + 4].max() < 30  # the middle stays dark
    # the picture's own light: a grey photo gets grey teeth; no more than its brightest skin
    grey = prepare_grey_portrait(p)
    g = Compositor(grey, None).teeth_colour
    assert np.ptp(g) < 1 and g[0] < np.percentile(grey.source, 99.5)


def test_the_models_blurred_mouth_inside_stays_out_of_the_sharp_one():
    from llia_core.portrait import Compositor

    p = _portrait()
    ax, ay, _ = (float(v) for v in p.mouth_anchor)
    mouth = np.array([[0.9, 0.5, 0.0]])
    comp = Compositor(p, None)
    ref = comp.reference_for(mouth[0]) / 255
    plain = comp.composite(ref[None], mouth)[0].astype(float)
    painted = comp.composite(np.clip(ref - 0.2, 0, 1)[None], mouth)[0].astype(float)  # the model darkened everything
    (cx, cy), (kx, ky) = _source_pixel(p, ax, ay + 0.3 * 0.9 * 0.26), _source_pixel(p, ax + 0.45, ay - 0.35)
    assert np.abs(painted - plain)[cy - 1:cy + 2, cx - 2:cx + 3].max() <= 1  # inside the opening: the renderer's
    assert (plain - painted)[ky - 1:ky + 2, kx - 1:kx + 2].mean() > 30  # the cheek: the model's change


def prepare_grey_portrait(p):
    import cv2

    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.portrait import prepare_portrait

    grey = cv2.cvtColor(cv2.imread(str(DEFAULT_PORTRAIT)), cv2.COLOR_BGR2GRAY)
    return prepare_portrait(np.repeat(grey[..., None], 3, -1), 128)


def test_photos_become_still_idle_and_listening_clips_mirrored(tmp_path):
    import shutil

    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.training.data.dataset import ClipDataset, load_clip
    from llia_core.training.data.photos import ingest_photos

    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(DEFAULT_PORTRAIT, src / "astronaut.png")
    import cv2

    cv2.imwrite(str(src / "blank.png"), np.full((200, 200, 3), 128, np.uint8))
    counts = ingest_photos(src, tmp_path / "data", val_names=("astronaut",), progress=False, seconds=1.0)
    assert counts == {"photos": 2, "clips": 4, "no face": 1}
    clips = [load_clip(p) for p in ClipDataset(tmp_path / "data", "val").paths]
    assert sorted(int(c.states[0]) for c in clips) == sorted([IDLE, LISTENING] * 2)
    for c in clips:
        assert c.frames.shape == (25, 128, 128, 3) and len(c.audio) == 16000 and (c.mouth_open == 0).all()
        assert (c.frames == c.reference[None]).all()
    a, b = clips[0].reference, clips[2].reference
    assert np.array_equal(a[:, ::-1], b) or np.array_equal(a, b[:, ::-1])
    again = ingest_photos(src, tmp_path / "data", val_names=("astronaut",), progress=False, seconds=1.0)
    assert again["clips"] == 4  # resumed: nothing redone


@torch.no_grad()
@pytest.mark.parametrize("name", ["real", "real-lower"])
def test_the_residual_of_a_real_model_changes_only_the_region_around_the_mouth(name):
    from llia_core.models.mouth_warp import mouth_region

    model = LLIAModel(get_config(name)).eval()
    torch.nn.init.normal_(model.denoiser.unet.conv_out.weight, std=0.1)  # a residual everywhere
    args = _inputs(model, states=IDLE)
    out = model.denoiser(**args, mouth=torch.tensor([[[0.0, 0.5, 0.0]] * 3]))
    px = torch.nn.functional.pixel_shuffle(out[:, :, 0] - args["reference_latent"], 4)[0].abs().sum(0)
    view = model.config.framing
    region = mouth_region(128, view)[0, 0]
    assert px[region == 0].max() < 1e-4 and px[region > 0.5].mean() > 1e-3
    nose = int(view.to_pixels([[0, 0.05]], 128)[0, 1])  # the lower-face crop starts under the eyes
    assert region[nose].max() == 0 and region[int(view.to_pixels([[0, framing.MOUTH_CENTRE_Y]], 128)[0, 1])].max() == 1
    whole = mouth_region(128, FACE)[0, 0]  # in the whole-face crop: eyes and forehead stay the photo's
    assert whole[int(FACE.to_pixels([[0, framing.EYE_Y]], 128)[0, 1])].max() == 0


@pytest.mark.parametrize("view", [FACE, get_config("real-lower").framing], ids=["whole face", "lower face"])
def test_paste_backs_reference_warp_is_the_models_own(view):
    from llia_core.cli import DEFAULT_PORTRAIT
    from llia_core.portrait import Compositor, prepare_portrait

    p = prepare_portrait(str(DEFAULT_PORTRAIT), 128, view=view)
    comp = Compositor(p, None)
    for m in ([0.7, 0.5, 0.0], [1.0, 1.0, 0.0], [0.6, 0.0, 1.0], [0.0, 0.5, 0.0]):
        model = warp_pixels(p.image[None].float(), torch.tensor([m]), view, p.mouth_anchor[None])
        ours = comp.reference_for(np.array(m)) / 255
        assert np.abs(ours - model[0].permute(1, 2, 0).numpy()).max() < 1e-2  # OpenCV interpolates in 1/32 px


REALFACES = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "realfaces"


@pytest.mark.skipif(not (REALFACES / "talking").is_dir(), reason="needs ../shared/realfaces")
def test_eval_real_scores_a_held_out_video_and_photo(tmp_path):
    from llia_core.evaluation.real import run_real_eval

    report = run_real_eval("bundled", str(REALFACES), str(tmp_path / "report"), videos=["styletalk_reagan_clip1"],
                           photos=["hallo_1"], seconds=3.0, photo_seconds=4.0, figure=str(tmp_path / "fig.jpg"))
    v, p = report["videos"][0], report["photos"][0]
    assert v["frames"] == 75 and -1 <= v["mouth_r"] <= 1 and v["mouth_motion_ratio"] > 0
    assert v["shimmer_generated"] < v["shimmer_real"] and v["sharpness_ratio"] > 0.6 and v["identity_ssim"] > 0.9
    assert p["frames"] == 100 and p["closed_in_silence_pct"] == 100.0 and p["speech_silence_ratio"] > 1
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.md").read_text().count("|") > 20
    import cv2

    assert cv2.imread(str(tmp_path / "fig.jpg")).shape[0] == 2 * 360  # one row per video and photo
