"""Expression templates and motion controls: measured with the face mesh, checked for direction and
monotonicity (never timings)."""

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from llia_core.audio import encode_audio, load_audio
from llia_core.cli import DEFAULT_AUDIO, DEFAULT_PORTRAIT
from llia_core.config import HeadMotionConfig
from llia_core.errors import LLIAError, PortraitError
from llia_core.models.head_model import HeadMotionModel
from llia_core.evaluation.controls import count_blinks, eye_openness, identity_shift, track
from llia_core.pipeline import LLIAPipeline, SamplerConfig
from llia_core.pipeline.output import FrameRenderer, render_clips
from llia_core.portrait import find_faces, load_image, prepare_portrait
from llia_core.portrait.expression import mouth_geometry
from llia_core.portrait.face_motion import EYELIDS, FaceMotion, MotionControls, blink_closure
from llia_core.states import SPEAKING, states_from_activity

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "realfaces" / "photos"
IDENTITY = np.eye(2, 3)


@pytest.fixture(scope="module")
def templates():
    return {e: prepare_portrait(DEFAULT_PORTRAIT, 128, expression=e) for e in ("as_photo", "neutral", "slight_smile")}


@pytest.fixture(scope="module")
def bundled():
    from llia_core.checkpoints import load_model

    return LLIAPipeline(load_model("bundled"))


def test_templates_close_the_smile_and_leave_the_rest_of_the_face(templates):
    photo = load_image(DEFAULT_PORTRAIT)
    as_photo, neutral, smile = (mouth_geometry(templates[e].landmarks) for e in ("as_photo", "neutral", "slight_smile"))
    assert np.array_equal(templates["as_photo"].source, photo)
    assert as_photo["gap"] > 0.2  # the bundled portrait smiles with its teeth showing
    assert neutral["gap"] < 0.5 * as_photo["gap"] and smile["gap"] < 0.6 * as_photo["gap"]
    assert neutral["width"] < as_photo["width"] - 0.1  # a relaxed mouth is narrower than a grin
    assert -smile["corners"] > -neutral["corners"] + 0.02  # the smile's corners sit higher
    face = templates["as_photo"].landmarks
    eyes_y = max(face.eye_centres()[0][1], face.eye_centres()[1][1])
    nose_y = face.xy[2, 1]
    for e in ("neutral", "slight_smile"):
        edited = templates[e].source
        changed = np.abs(edited.astype(int) - photo.astype(int)).max(-1) > 0
        ys, _ = np.nonzero(changed)
        assert changed.any() and ys.min() > eyes_y + 0.25 * (nose_y - eyes_y)  # eyes, brows, forehead stay
        assert identity_shift(face, templates[e].landmarks) < 2.0  # % of the eye distance


def test_templates_are_checked_and_skip_faces_without_landmarks():
    with pytest.raises(PortraitError, match="unknown expression 'grin'; use one of"):
        prepare_portrait(DEFAULT_PORTRAIT, 128, expression="grin")
    noise = np.random.default_rng(0).integers(0, 255, (60, 60, 3), dtype=np.uint8)
    p = prepare_portrait(noise, 32, mode="whole", expression="neutral")
    assert np.array_equal(p.source, noise)


@pytest.mark.skipif(not (PHOTOS / "hallo_4.jpg").exists(), reason="needs ../shared/realfaces")
def test_a_photo_that_is_already_neutral_barely_changes():
    photo = load_image(str(PHOTOS / "hallo_4.jpg"))
    p = prepare_portrait(photo, 128, expression="neutral")
    x0, y0, x1, y1 = (int(v) for v in p.landmarks.box())
    changed = np.abs(p.source.astype(int) - photo.astype(int)).max(-1)[y0:y1, x0:x1] > 8
    assert changed.mean() < 0.01 and not p.notes


def test_blinks_come_at_the_rate_asked():
    face = find_faces(load_image(DEFAULT_PORTRAIT))[0]
    counts = []
    for rate in (0.0, 10.0, 20.0, 40.0):
        motion = FaceMotion(face, IDENTITY, (512, 512), 25.0, MotionControls(blink_rate=rate, seed=3))
        closure = np.array([motion.blink(i) for i in range(25 * 600)])  # ten minutes
        shut = closure > 0.5
        counts.append(int((shut[1:] & ~shut[:-1]).sum()) / 10)
    assert counts[0] == 0
    for rate, per_minute in zip((10, 20, 40), counts[1:]):
        assert abs(per_minute - rate) < 0.25 * rate
    assert blink_closure(0.1) == 1.0 and blink_closure(-0.01) == 0.0 and blink_closure(0.3) == 0.0


def test_blinks_come_more_often_in_pauses_than_in_speech_and_keep_the_rate_over_talk():
    face = find_faces(load_image(DEFAULT_PORTRAIT))[0]
    fps, minutes = 25.0, 40
    n = int(fps * 60 * minutes)
    speaking = (np.arange(n) // int(fps * 6)) % 7 != 6  # 6 s turns, one in seven silent (~85% speech)
    onsets_in = {True: 0, False: 0}
    motion = FaceMotion(face, IDENTITY, (512, 512), fps, MotionControls(blink_rate=20, seed=5))
    for start in range(0, n, 9):  # in pieces, as live mode gives them
        motion.follow_states(start, np.zeros(min(9, n - start), bool), speaking[start:start + 9])
    shut = np.array([motion.blink(i) for i in range(n)]) > 0.5
    onsets = np.flatnonzero(shut[1:] & ~shut[:-1]) + 1
    for k in onsets:
        onsets_in[bool(speaking[k])] += 1
    per_min = {k: onsets_in[k] / ((speaking == k).sum() / fps / 60) for k in (True, False)}
    assert 1.15 < per_min[False] / per_min[True] < 1.8, per_min  # 1.4x in pauses (the real talkers')
    assert abs(len(onsets) / minutes - 20) < 2.5  # the rate asked, over talk with ~85% speech
    # every blink still runs its course: closed in the middle, open again within 0.3 s
    assert all(not shut[k + 8:k + 12].any() for k in onsets[:-1])
    # whole or in pieces, and a motion that continues another's clock: the same blinks
    again = FaceMotion(face, IDENTITY, (512, 512), fps, MotionControls(blink_rate=20, seed=5))
    again.follow_states(0, np.zeros(n, bool), speaking)
    assert np.array_equal(shut[:3000], np.array([again.blink(i) for i in range(3000)]) > 0.5)
    later = FaceMotion(face, IDENTITY, (512, 512), fps, MotionControls(blink_rate=20, seed=5, head_motion=0.5))
    later.continue_from(again)
    later.follow_states(2000, np.zeros(n - 2000, bool), speaking[2000:])  # frames it was given again: no change
    assert np.array_equal(shut[:3000], np.array([later.blink(i) for i in range(3000)]) > 0.5)


def test_a_blink_shuts_both_eyes_as_the_mesh_sees_it_and_leaves_other_frames_alone():
    photo = load_image(DEFAULT_PORTRAIT)
    face = find_faces(photo)[0]
    motion = FaceMotion(face, IDENTITY, (512, 512), 25.0, MotionControls(blink_rate=30, seed=1))
    closures = [motion.blink(i) for i in range(250)]
    shut, open_ = int(np.argmax(closures)), closures.index(0.0)
    assert motion.apply(photo, open_) is photo  # nothing to draw: the frame itself
    closed = motion.apply(photo, shut)
    assert eye_openness(closed, find_faces(closed)[0]) < 0.6 * eye_openness(photo, face)
    changed = np.abs(closed.astype(int) - photo.astype(int)).max(-1) > 0
    ys, _ = np.nonzero(changed)
    assert ys.max() < face.xy[1, 1]  # above the nose tip only
    assert count_blinks(np.array([0.3] * 5 + [0.05, 0.04] + [0.3] * 5 + [0.1] + [0.3] * 4)) == 2


def test_motion_follows_the_video_clock_not_the_call_order():
    photo = load_image(DEFAULT_PORTRAIT)
    face = find_faces(photo)[0]
    controls = MotionControls(head_motion=1.0, blink_rate=40, seed=4)
    head = HeadMotionModel(HeadMotionConfig(hidden=8))
    speech = load_audio(str(DEFAULT_AUDIO)).waveform.numpy()[:16000 * 5]
    a = FaceMotion(face, IDENTITY, (512, 512), 25.0, controls, head)
    b = FaceMotion(face, IDENTITY, (512, 512), 25.0, controls, head)
    a.hear(speech, final=True)
    b.hear(speech, final=True)
    for i in range(0, 120):
        a.apply(photo, i)
    assert np.array_equal(a.apply(photo, 119), b.apply(photo, 119))
    with pytest.raises(LLIAError, match="blink_rate must be between 0 and 60"):
        MotionControls(blink_rate=100).validate()
    with pytest.raises(LLIAError, match="head_motion must be between"):
        MotionControls(head_motion=-1).validate()


def _speech(pipe, seconds):
    a = pipe.config.audio
    return encode_audio(str(DEFAULT_AUDIO), float(pipe.config.fps), duration=seconds, n_mels=a.n_mels,
                        context=a.context, mel_per_token=a.mel_per_token, token_seconds=a.token_seconds)


def test_mouth_amplitude_scales_the_opening_the_mesh_measures(bundled, templates):
    portrait = templates["neutral"]
    audio = _speech(bundled, 2.0)
    states = states_from_activity(audio.speech)
    speaking = states.numpy() == SPEAKING
    assert speaking.sum() >= 25
    stds, mouths = [], []
    for amp in (0.0, 0.5, 1.0, 1.5):
        sampler = SamplerConfig(mouth_amplitude=amp)
        clips = list(bundled.stream(portrait, audio, states, sampler))
        mouth = torch.cat([c.mouth for c in clips])
        mouths.append(mouth)
        frames = render_clips(iter(clips), FrameRenderer(portrait, "full", None), total_frames=audio.num_frames).frames
        assert frames.shape == (audio.num_frames, 512, 512, 3)
        stds.append(float(np.nanstd(track(frames[speaking])["opening"])))  # the mesh only where it speaks
    assert torch.equal(mouths[0], torch.tensor([[0.0, 0.5, 0.0]]).expand_as(mouths[0]))
    assert torch.allclose(mouths[1][:, 0], 0.5 * mouths[2][:, 0].clamp(0, 1), atol=1e-5)
    assert stds[0] < stds[1] < stds[2] < stds[3]
    assert 0.3 < stds[1] / stds[2] < 0.75  # half the amplitude, about half the variation as measured
    default = next(iter(bundled.stream(portrait, audio, states, SamplerConfig())))
    assert torch.equal(default.frames, next(iter(bundled.stream(portrait, audio, states,
                                                                 SamplerConfig(mouth_amplitude=1.0)))).frames)
    with pytest.raises(LLIAError, match="mouth_amplitude must be between 0"):
        SamplerConfig(mouth_amplitude=3).validate(16)


def test_the_frozen_path_draws_the_scaled_mouth_like_the_eager_one(bundled, templates):
    portrait = templates["neutral"]
    audio = _speech(bundled, 0.6)
    states = torch.full((audio.num_frames,), SPEAKING)
    # full steps: the frozen path serves those (a clip reusing deep features runs eagerly)
    sampler = SamplerConfig(mouth_amplitude=1.6, first_clip=2, clip_frames=2, reuse_features=False)
    fast = LLIAPipeline(bundled.model)
    fast.freeze_fixed_shapes(2)
    eager = [c.frames for c in bundled.stream(portrait, audio, states, sampler)]
    frozen = [c.frames for c in fast.stream(portrait, audio, states, sampler)]
    assert len(fast._frozen) == 2 and fast._frozen[0].shapes[-1] is not None  # traced with the mouth as an input
    assert max(float((a - b).abs().max()) for a, b in zip(eager, frozen)) < 2e-3


def test_live_motion_can_be_read_and_changed_over_http(bundled, templates):
    from llia_core.live import LiveAvatar, LiveServer

    avatar = LiveAvatar(bundled, templates["neutral"], steps=1, clip_frames=2, frozen=False)
    assert avatar.motion == MotionControls() and avatar.renderer.motion is None
    server = LiveServer(avatar, "127.0.0.1", 0).start(threads=1)

    def post(body):
        req = urllib.request.Request(server.url + "api/motion", data=body, method="POST")
        try:
            return 200, json.loads(urllib.request.urlopen(req, timeout=10).read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        code, reply = post(json.dumps({"head_motion": 1.5, "blink_rate": 20}).encode())
        assert code == 200 and reply == {"mouth_amplitude": 1.0, "head_motion": 1.5, "blink_rate": 20.0}
        assert avatar.renderer.motion is not None and avatar.sampler.mouth_amplitude == 1.0
        code, reply = post(json.dumps({"mouth_amplitude": 0.5}).encode())
        assert code == 200 and avatar.sampler.mouth_amplitude == 0.5 and avatar.motion.head_motion == 1.5
        code, reply = post(b'{"smile": 1}')
        assert code == 400 and "unknown control(s) smile" in reply["error"]
        code, reply = post(b'{"blink_rate": 500}')
        assert code == 400 and "blink_rate must be between 0 and 60" in reply["error"]
        code, reply = post(b"not json")
        assert code == 400 and "JSON object" in reply["error"]
        got = json.loads(urllib.request.urlopen(server.url + "api/motion", timeout=10).read())
        assert got["mouth_amplitude"] == 0.5
    finally:
        server.stop()
    frames = avatar.step()
    assert len(frames) == 2 and frames[0].image.shape == (512, 512, 3)


def test_motion_settings_node_feeds_the_sampler(bundled):
    from comfy_harness import load_pack

    m = load_pack().NODE_CLASS_MAPPINGS
    (motion,) = m["LLIAMotionSettings"]().settings(0.0, 2.0, 30.0, 7)
    assert motion == MotionControls(0.0, 2.0, 30.0, 7)
    with pytest.raises(LLIAError):
        m["LLIAMotionSettings"]().settings(0.0, 5.0, 30.0, 7)
    handle = sys.modules[m["LLIALoadModel"].__module__].LLIAModelHandle(bundled, "bundled", "fp32")
    photo = torch.from_numpy(load_image(DEFAULT_PORTRAIT)).float()[None] / 255
    wave = load_audio(str(DEFAULT_AUDIO), duration=1.2).waveform
    audio, n = m["LLIAEncodeAudio"]().encode(handle, {"waveform": wave[None, None], "sample_rate": 16000}, 25.0)
    ref = m["LLIAReferencePortrait"]().prepare(handle, photo, "face", 1.8, "neutral")[0]
    assert mouth_geometry(ref.landmarks)["gap"] < 0.15  # the node closed the smile
    states, _ = m["LLIAStateSwitcher"]().states(audio, "speaking", "")
    sampler = m["LLIAConsistencyStep"]().settings("consistency", 2, 1.0, 1.0, 0)[0]
    still = m["LLIAVariableLengthSampler"]().sample(handle, audio, ref, states, sampler, 2, 16, "frames", "t")
    moving = m["LLIAVariableLengthSampler"]().sample(handle, audio, ref, states, sampler, 2, 16, "frames", "t",
                                                     motion=motion)
    a, b = still["result"][0], moving["result"][0]
    assert a.shape == b.shape == (n, 512, 512, 3)
    m_a, m_b = track((a.numpy() * 255).round().astype(np.uint8)), track((b.numpy() * 255).round().astype(np.uint8))
    assert np.nanstd(m_b["roll"]) > 3 * np.nanstd(m_a["roll"])  # the head sways
    # amplitude 0: the mouth stays shut while the voice speaks (the mesh's reading of a shut mouth moves with the
    # swaying head, so the mean, not the spread, tells a mouth that opens from one that stays)
    assert np.nanmean(m_b["opening"]) < 0.5 * np.nanmean(m_a["opening"])


def test_teeth_can_be_turned_off_from_the_node_the_cli_and_the_live_process():
    from comfy_harness import load_pack

    from llia_core.cli import add_generate_args, motion_controls
    from llia_core.pipeline.output import FrameRenderer
    from llia_core.portrait import prepare_portrait

    m = load_pack().NODE_CLASS_MAPPINGS
    assert m["LLIAMotionSettings"]().settings(1.0, 1.0, 15.0, 0)[0].teeth  # on unless asked (older graphs too)
    (plain,) = m["LLIAMotionSettings"]().settings(1.0, 1.0, 15.0, 0, teeth=False)
    assert plain == MotionControls(1.0, 1.0, 15.0, 0, teeth=False)
    parser = argparse.ArgumentParser()
    add_generate_args(parser)
    assert motion_controls(parser.parse_args([])).teeth
    assert not motion_controls(parser.parse_args(["--no-teeth"])).teeth
    portrait = prepare_portrait(str(DEFAULT_PORTRAIT), 128)
    drawn = FrameRenderer(portrait, motion=MotionControls(1.0, 1.0, 15.0, 0))
    left_out = FrameRenderer(portrait, motion=plain)
    assert drawn.compositor.teeth_colour is not None and left_out.compositor.teeth_colour is None
    mouth = np.array([[0.9, 0.5, 0.0]])
    crop = drawn.compositor.reference_for(mouth[0])[None] / 255
    a, b = drawn(crop, mouth)[0].astype(int), left_out(crop, mouth)[0].astype(int)
    changed = np.abs(a - b).sum(-1) > 30
    assert 0 < changed.mean() < 0.01  # only the opening: the teeth
    from llia_core.live.process import LiveProcess

    child = LiveProcess("bundled", portrait, 0, motion=plain, python="/bin/echo")  # prints the command it got
    child.proc.wait(10)
    assert "--no-teeth" in child.log_tail()  # the Live View node's own process draws no teeth either


def test_the_blink_reader_sees_a_drawn_blink_and_counts_short_dips_only():
    from llia_core.evaluation.blinks import DIP, blink_onsets, blink_timing, eye_contrast

    import cv2

    photo = load_image(DEFAULT_PORTRAIT)
    face = find_faces(photo)[0]
    open_eyes, shut_eyes = photo.copy(), photo.copy()
    for upper, lower in EYELIDS:  # an open eye (white, a dark iris) and a shut one (skin, a thin lash line)
        eye = face.xy[list(upper) + list(lower)]
        (cx, cy), w = eye.mean(0), float(np.ptp(eye[:, 0]))
        centre, axes = (int(cx), int(cy)), (int(w / 2), int(w / 5))
        for img in (open_eyes, shut_eyes):
            cv2.rectangle(img, (int(cx - w), int(cy - w / 2)), (int(cx + w), int(cy + w / 2)), (200, 160, 140), -1)
        cv2.ellipse(open_eyes, centre, axes, 0, 0, 360, (235, 235, 235), -1)
        cv2.circle(open_eyes, centre, int(w / 5), (40, 30, 25), -1)
        cv2.line(shut_eyes, (int(cx - w / 2), int(cy)), (int(cx + w / 2), int(cy)), (60, 40, 35), 1)
    open_, shut = eye_contrast(open_eyes, face.xy), eye_contrast(shut_eyes, face.xy)
    assert shut < 0.5 * DIP * open_
    assert np.isnan(eye_contrast(photo[:, :200], face.xy))  # an eye off the frame: not read
    contrast = np.full(500, 40.0) + np.random.default_rng(0).normal(0, 0.5, 500)
    contrast[[50, 51, 52]] = 30.0  # a blink
    contrast[200:240] = 28.0  # a look down (1.6 s): not a blink
    contrast[300:303] = np.nan  # a lost face
    contrast[400:405] = 31.0  # another blink
    assert blink_onsets(contrast, 25.0).tolist() == [50, 400]
    speech = np.zeros(500, bool)
    speech[60:390] = True
    row = {"fps": 25.0, "onsets": blink_onsets(contrast, 25.0), "read": np.isfinite(contrast), "speech": speech}
    timing = blink_timing([row])
    assert timing["blinks"]["pause"] == 2 and timing["blinks"]["speech"] == 0
    assert timing["blinks"]["before_speech"] == 1 and timing["blinks"]["after_speech"] == 0  # 50 is 10 frames before 60
