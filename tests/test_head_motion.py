"""Head motion: the pose estimator, the head-motion model's stream and training, and the warp that
draws it (read back by the face mesh, never timed)."""

import numpy as np
import pytest
import torch

from llia_core.cli import DEFAULT_AUDIO, DEFAULT_PORTRAIT
from llia_core.config import HeadMotionConfig
from llia_core.models.head_model import HEAD_OUTPUTS, HeadMotionModel, HeadMotionStream, head_features
from llia_core.portrait import find_faces, load_image
from llia_core.portrait.face_motion import DRAW_GAIN, FaceMotion, MotionControls
from llia_core.portrait.head_pose import euler_degrees, head_poses
from llia_core.training.head_data import HeadSequence
from llia_core.training.head_train import HeadTrainSettings, calibrate, motion_measures, train_head_model

IDENTITY = np.eye(2, 3)


def _rotation(roll, yaw, pitch):
    r, y, p = np.radians([roll, yaw, pitch])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return rz @ ry @ rx


@pytest.fixture(scope="module")
def face():
    return find_faces(load_image(DEFAULT_PORTRAIT))[0]


def test_pose_estimator_reads_known_rotations_and_shifts(face):
    base = face.points.astype(np.float64)
    centre = base.mean(0)
    truth = [(0, 0, 0, 0, 0)] * 5 + [(4, 0, 0, 0, 0), (0, 6, 0, 0, 0), (0, 0, -5, 0, 0), (2, -3, 4, 10, -6)]
    frames = [(base - centre) @ _rotation(*t[:3]).T + centre + np.array([t[3], t[4], 0]) for t in truth]
    poses = head_poses(np.stack(frames))
    for t, p in zip(truth, poses):
        assert np.allclose(p[:3], t[:3], atol=0.1), (t, p)
    assert poses[-1, 3] > 0 and poses[-1, 4] < 0  # shifted right and up
    assert euler_degrees(_rotation(10, -20, 5)) == pytest.approx((10, -20, 5), abs=1e-6)
    missing = np.stack(frames)
    missing[2] = np.nan
    assert np.isnan(head_poses(missing)[2]).all() and np.isfinite(head_poses(missing)[3]).all()


def _speech_wave(seconds=12.0, seed=0, burst=0.25):
    """Bursts (``burst`` seconds each) of noisy tone, speech-like loudness, between pauses; 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    n = int(burst * 16000)
    on = np.repeat(rng.random(int(np.ceil(len(t) / n))) > 0.4, n)[:len(t)]
    return (on * (0.2 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(len(t)))).astype(np.float32)


def test_stream_in_pieces_draws_the_whole_audios_motion_and_seeds_differ():
    torch.manual_seed(0)
    model = HeadMotionModel(HeadMotionConfig(hidden=16))
    wave = _speech_wave(6.0)
    wave[:4000] *= 4  # the loudest moment first: the 2 s loudness memory must carry it across pieces
    whole = HeadMotionStream(model, seed=3)
    whole.hear_audio(wave)
    whole.finish_audio()
    pieces = HeadMotionStream(model, seed=3)
    rng, i = np.random.default_rng(1), 0
    while i < len(wave):
        n = int(rng.integers(50, 4000))
        pieces.hear_audio(wave[i:i + n])
        i += n
    pieces.finish_audio()
    assert whole.poses().shape == (150, len(HEAD_OUTPUTS))
    assert np.array_equal(whole.poses(), pieces.poses())
    from llia_core.audio.features import log_mel

    feats = head_features(log_mel(torch.from_numpy(wave)), model.config, 150)
    assert np.array_equal(model.rollout(feats, seed=3), whole.poses())
    assert not np.allclose(model.rollout(feats, seed=4), whole.poses())
    assert np.array_equal(whole.poses()[0], np.zeros(len(HEAD_OUTPUTS)))  # the video starts at the portrait's pose
    assert whole.pose(100.0).tolist() == whole.pose(1000.0).tolist()  # past the end: held
    assert np.allclose(whole.pose(2.0), whole.poses()[50]) and np.allclose(whole.pose(2.02), whole.poses()[50:52].mean(0))


def test_the_oscillator_keeps_long_motion_stationary():
    torch.manual_seed(1)
    model = HeadMotionModel(HeadMotionConfig(hidden=16))
    from llia_core.audio.features import log_mel

    feats = head_features(log_mel(torch.from_numpy(_speech_wave(120.0, seed=2))), model.config)
    poses = model.rollout(feats, seed=0)
    first, last = poses[:1000].std(0), poses[-1000:].std(0)
    assert np.all(last < 3 * first + 1e-6) and np.isfinite(poses).all()  # no drift however long


def _toy_sequences(n=12, frames=300, seed=0):
    """Videos whose head moves in loud stretches and rests in quiet ones."""
    from llia_core.audio.features import log_mel

    rng = np.random.default_rng(seed)
    config = HeadMotionConfig(hidden=16)
    out = []
    for k in range(n):
        wave = _speech_wave(frames / 25.0, seed=seed * 100 + k, burst=0.8)
        feats = head_features(log_mel(torch.from_numpy(wave)), config, frames)
        loud = (np.abs(wave[:frames * 640].reshape(frames, 640)).mean(1) > 0.05).astype(float)
        drive = rng.standard_normal((frames, 6)) * (0.05 + loud[:, None])
        poses = np.zeros((frames, 6))
        v = np.zeros(6)
        for f in range(1, frames):
            v = 0.8 * v - 0.05 * poses[f - 1] + 0.3 * drive[f]
            poses[f] = poses[f - 1] + v
        poses *= np.array([1, 1, 1, 0.05, 0.05, 0.01])
        out.append(HeadSequence(f"toy{k}", f"p{k}", "wild", feats, poses.astype(np.float32), np.ones(frames, bool),
                                loud > 0))
    return config, out


def test_training_learns_more_motion_in_speech_and_calibration_matches_the_spread():
    config, seqs = _toy_sequences()
    untrained = HeadMotionModel(config)
    model = train_head_model(seqs[:10], config, HeadTrainSettings(steps=200, batch=16, gain_db=0.0, seed=0))
    calibrate(model, seqs[:10], rounds=2)
    ratios, speech_vs_pause, before, real = [], [], [], []
    for q in seqs[10:]:
        drawn = np.mean([model.rollout(q.feats, seed)[:, :3].std(0) for seed in range(3)], 0)
        ratios.append(drawn / q.poses[:, :3].std(0))
        loud = q.feats[:, config.bands].numpy()
        for net, out in ((model, speech_vs_pause), (untrained, before)):
            out.append(motion_measures(net.rollout(q.feats, 0), q.valid, q.speech, loud)["speed_speech_vs_pause"])
        real.append(motion_measures(q.poses, q.valid, q.speech, loud)["speed_speech_vs_pause"])
    assert 0.5 < np.median(ratios) < 2.0, ratios  # calibrated: about the real spread
    # it moves more while the audio is loud, as the videos it learned from (2-3.5x; drawn on 160 ms steps it
    # keeps less of the frame-to-frame jitter), and an untrained model does not
    assert np.median(real) > 2 and np.median(speech_vs_pause) > 1.3, (speech_vs_pause, real)
    assert np.median(before) < 1.15, before


def _frozen(face, pose, settings=MotionControls(head_motion=1.0)):
    motion = FaceMotion(face, IDENTITY, (512, 512), 25.0, settings, HeadMotionModel(HeadMotionConfig(hidden=8)))
    motion.stream.pose = lambda seconds: np.asarray(pose, float) / DRAW_GAIN  # drawn exactly as ``pose``
    return motion


def test_the_warp_draws_roll_and_turns_the_mesh_reads_and_keeps_the_picture_around(face):
    photo = load_image(DEFAULT_PORTRAIT)
    tests = [(0,) * 6, (5, 0, 0, 0, 0, 0), (0, -8, 0, 0, 0, 0), (0, 0, 8, 0, 0, 0), (0, 0, 0, 0, 0, 0.05)]
    motions = [_frozen(face, t) for t in tests]
    frames = [m.apply(photo, 10) for m in motions]
    assert frames[0] is not None and np.array_equal(frames[0], photo)
    poses = head_poses(np.stack([find_faces(f)[0].points for f in [photo] * 4 + frames[1:4]]))
    assert 4.0 < poses[4, 0] < 6.0  # roll drawn 5: read 5
    assert poses[5, 1] < -3.0 and poses[6, 2] > 3.0  # a drawn turn and nod read as one (about 0.5-0.7 of the angle)
    x0, y0, x1, y1 = motions[1]._head[0]
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert outside[430:].all() and outside[:, :30].all()  # the body below the shoulders and the flag's edge
    for f in frames[1:4]:
        assert np.array_equal(f[outside], photo[outside])  # outside the head's box nothing moves
    brow = frames[4].astype(int) - photo.astype(int)
    ys, _ = np.nonzero(np.abs(brow).max(-1) > 0)
    eyes_y = min(c[1] for c in face.eye_centres())
    assert ys.size and ys.max() < eyes_y + 2 and ys.min() > face.xy[10, 1] - 60  # brows and forehead only


def test_head_motion_grows_with_the_setting():
    photo = load_image(DEFAULT_PORTRAIT)
    face = find_faces(photo)[0]
    from llia_core.checkpoints import load_model

    head = load_model("bundled").head_model
    assert head is not None, "the bundled model has a head-motion model"
    from llia_core.audio import load_audio

    wave = load_audio(str(DEFAULT_AUDIO)).waveform.numpy()[:16000 * 8]
    spreads = []
    for amount in (0.0, 0.5, 1.0, 2.0):
        motion = FaceMotion(face, IDENTITY, (512, 512), 25.0, MotionControls(head_motion=amount, seed=2), head)
        motion.hear(wave, final=True)
        spreads.append(np.stack([motion.pose(i) for i in range(200)])[:, :3].std(0).sum())
    assert spreads[0] == 0 and spreads[1] < spreads[2] < spreads[3]
    assert spreads[3] == pytest.approx(2 * spreads[2], rel=0.2)  # twice the setting, twice the motion (until the limits)


def test_a_new_setting_keeps_the_head_where_it_is(face):
    from llia_core.portrait.face_motion import MAX_DRAWN

    head = HeadMotionModel(HeadMotionConfig(hidden=8))
    a = FaceMotion(face, IDENTITY, (512, 512), 25.0, MotionControls(head_motion=1.0, seed=5), head)
    a.hear(_speech_wave(4.0))
    b = FaceMotion(face, IDENTITY, (512, 512), 25.0, MotionControls(head_motion=2.0, seed=5), head)
    b.continue_from(a)
    assert b.stream is a.stream
    assert np.allclose(b.pose(60), np.clip(a.stream.pose(60 / 25.0) * 2 * DRAW_GAIN, -MAX_DRAWN, MAX_DRAWN))
    c = FaceMotion(face, IDENTITY, (512, 512), 25.0, MotionControls(head_motion=1.0, seed=6), head)
    c.continue_from(a)
    assert c.stream is not a.stream  # another seed: another motion


def test_listening_nods_come_only_while_listening_and_in_order(face):
    settings = MotionControls(head_motion=1.0, seed=3)
    motion = FaceMotion(face, IDENTITY, (512, 512), 25.0, settings)  # no head-motion model: nods only
    flags = np.r_[np.zeros(100, bool), np.ones(750, bool), np.zeros(250, bool)]  # listening from 4 s to 34 s
    for start in range(0, len(flags), 7):  # in pieces, as live mode gives them
        motion.follow_states(start, flags[start:start + 7])
    pitch = np.array([motion.pose(i)[2] for i in range(len(flags))])
    starts = np.flatnonzero((pitch[1:] > 0.5) & (pitch[:-1] <= 0.5)) + 1
    assert 3 <= len(starts) <= 10, starts  # one every 5 s on average
    assert starts.min() >= 100 + 12 and starts.max() < 850  # half a second in; none after listening ends
    assert np.all(np.diff(starts) >= 2.0 * 25 - 1) and pitch.max() <= 3.0 * DRAW_GAIN[2] + 1e-9
    assert np.array_equal(np.stack([motion.pose(i) for i in range(100)]), np.zeros((100, 6)))
    again = FaceMotion(face, IDENTITY, (512, 512), 25.0, settings)
    again.follow_states(0, flags)
    assert np.array_equal(pitch, [again.pose(i)[2] for i in range(len(flags))])  # whole or in pieces: the same


def test_live_mode_draws_the_offline_head_motion(tiny_model, face):
    """The live engine hears the avatar's track in pieces as clips come; its head poses equal the offline
    renderer's for the same speech (and the same seed)."""
    import copy

    from llia_core.live.session import LiveAvatar
    from llia_core.pipeline import LLIAPipeline
    from llia_core.pipeline.output import FrameRenderer
    from llia_core.portrait import prepare_portrait

    torch.manual_seed(2)
    model = copy.deepcopy(tiny_model)  # (a shallow copy would share its submodules' dict with the fixture)
    model.head_model = HeadMotionModel(HeadMotionConfig(hidden=16)).eval()
    portrait = prepare_portrait(load_image(DEFAULT_PORTRAIT), model.config.resolution)
    motion = MotionControls(head_motion=1.0, seed=7)
    avatar = LiveAvatar(LLIAPipeline(model), portrait, steps=1, clip_frames=2, motion=motion, output="full",
                        max_size=256)
    wave = _speech_wave(3.0, seed=5)
    avatar.now = lambda: (avatar.next_frame + 0.5) / avatar.fps - avatar.lead  # never behind the clock
    with avatar._lock:  # the voice from media time 0
        avatar._track, avatar._track_offset = wave, 0
    with torch.no_grad():
        while avatar.next_frame < 60:
            avatar.step()
    live = np.stack([avatar.renderer.motion.pose(i) for i in range(60)])
    offline = FrameRenderer(portrait, "full", 256, motion, 25.0, head_model=model.head_model,
                            speech=wave)
    assert np.abs(live).max() > 0.1  # it moved
    assert np.allclose(live, np.stack([offline.motion.pose(i) for i in range(60)]), atol=1e-5)


def test_folds_summary_and_bend_around_head(face):
    from llia_core.evaluation.head import _markdown, bend_around_head
    from llia_core.training.head_train import leave_people_out, summarise

    config, seqs = _toy_sequences(n=6, frames=200)
    rows = leave_people_out(seqs, [["p0", "p1"], ["p2", "p3"], ["p4", "p5"]], config,
                            HeadTrainSettings(steps=30, batch=8))
    assert sorted(r["person"] for r in rows) == [f"p{k}" for k in range(6)]  # each scored by a model that never saw it
    s = summarise(rows)["wild"]
    assert s["videos"] == 6 and set(s["std_ratio_median"]) == set(HEAD_OUTPUTS)
    text = _markdown({"model": "m", "folds": [[], [], []], "steps": 30, "seconds": 1.0, "pose_level": summarise(rows)})
    assert "| wild | 6 | 6 |" in text
    motion = _frozen(face, (0,) * 6)
    assert bend_around_head(motion, np.zeros(6)) == 0.0
    small, large = bend_around_head(motion, np.array([2.0, 3, 3, 0, 0, 0])), bend_around_head(motion, np.array([8.0, 12, 12, 0, 0, 0]))
    assert 0 < small < large < 15
    # a pose one real talker's spread out on every axis (roll 3 degrees; yaw and pitch as drawn): lines
    # around the head bend by a few degrees, not the 13.5 a pivot at the neck and a short fade gave
    assert bend_around_head(motion, np.array([3.0, 4.8, 5.4, 0, 0, 0])) < 6.0


def test_a_model_loaded_in_bf16_keeps_its_mouth_and_head_models_float_and_draws_the_same():
    # --dtype auto picks bf16 on CPUs with native bf16: the denoiser goes bf16, the small audio models
    # hear float features and must stay float32 (both raised dtype errors mid-job before)
    from conftest import tiny_config

    from llia_core.audio import encode_audio
    from llia_core.config import MouthModelConfig
    from llia_core.models import LLIAModel
    from llia_core.states import SPEAKING

    torch.manual_seed(0)
    model = LLIAModel(tiny_config(mouth_model=MouthModelConfig(width=16, hidden=16),
                                  head_model=HeadMotionConfig(hidden=16))).eval()
    wave = _speech_wave(3.0)
    audio = encode_audio((torch.from_numpy(wave), 16000), 25.0)
    frames, states = torch.arange(20), torch.full((20,), SPEAKING)
    want_mouth = model.mouth_shapes(audio, frames, states)
    want_head = model.head_model.rollout(head_features(__import__("llia_core.audio.features", fromlist=["log_mel"])
                                                       .log_mel(torch.from_numpy(wave)), model.config.head_model, 75), seed=1)
    model.to(torch.bfloat16)
    assert next(model.denoiser.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in [*model.mouth_model.parameters(), *model.head_model.parameters()])
    assert torch.equal(model.mouth_shapes(audio, frames, states), want_mouth)
    stream = HeadMotionStream(model.head_model, seed=1)
    stream.hear_audio(wave)
    stream.finish_audio(75)
    assert np.array_equal(stream.poses(), want_head)
