"""The audio-to-mouth model: its windows, its training recipe, offsets, tracks and synthetic voices."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from llia_core.audio import AudioFeatures, encode_audio
from llia_core.audio.features import lazy_mouth_windows, log_mel, mouth_windows
from llia_core.config import MouthModelConfig, get_config
from llia_core.models import LLIAModel
from llia_core.models.mouth_model import AudioToMouth, MOUTH_OUTPUTS
from llia_core.training import mouth_train as mt
from llia_core.training.mouth_data import (Utterance, augment_windows, frame_centres, gather_windows, map_time,
                                           track_mouth, _time_map)

SMALL = MouthModelConfig(past_seconds=0.2, future_seconds=0.08, n_mels=24, width=32, hidden=32, strided_layers=2)


def _speaker_utterance(person: str, scale: float, seconds: float, seed: int, lag: int = 0) -> Utterance:
    """A made-up voice: the mouth opening (a smooth random curve) sets the energy of a formant that sits
    higher or lower by ``scale`` (another vocal tract), over a pitch-like ripple and noise. ``lag``: the
    sound runs that many frames behind the picture (re-encoded footage)."""
    rng = np.random.default_rng(seed)
    fps, d = 25.0, SMALL.n_mels
    n = int(seconds * fps)
    knots = rng.uniform(0, 1, n // 4 + 2)
    opening = np.interp(np.arange(n + abs(lag)) / 4, np.arange(len(knots)), knots)
    t_mel = np.arange(int(seconds * 100) + 1) / 100.0
    o_mel = np.interp(t_mel * fps - 0.5, np.arange(n + abs(lag)), opening[:n + abs(lag)] if lag >= 0 else opening)
    bands = np.arange(d)[None]
    centre = 8 * scale + 6 * o_mel[:, None]  # the first formant rises as the mouth opens
    power = 1e-3 + o_mel[:, None] * np.exp(-((bands - centre) / (2 * scale)) ** 2) \
        + 0.02 * rng.random((len(t_mel), d)) + 0.05 * (1 + np.sin(bands * scale))[0] * o_mel[:, None]
    mel = torch.from_numpy(np.log(power).astype(np.float32))
    target = opening[lag:lag + n] if lag >= 0 else opening[:n]
    targets = torch.zeros(n, len(MOUTH_OUTPUTS))
    targets[:, 0] = torch.from_numpy(target.astype(np.float32))
    valid = torch.zeros(n, len(MOUTH_OUTPUTS), dtype=torch.bool)
    valid[:, 0] = True
    return Utterance(f"{person}-{seed}", person, "wild", mel, targets, valid, torch.ones(n, dtype=torch.bool), fps)


def test_mouth_windows_are_the_same_eager_lazy_and_as_training_gathers_them():
    wave = torch.randn(16000 * 2) * 0.1
    mel = log_mel(wave, 80)
    for fps in (25.0, 30.0):
        n = int(2 * fps)
        eager = mouth_windows(mel, n, fps, 40, 12)
        lazy = lazy_mouth_windows(wave, n, fps, 80, 40, 12)
        assert eager.shape == (n, 53, 80)
        assert torch.allclose(lazy[7:19], eager[7:19], atol=1e-5)
        assert torch.allclose(gather_windows(mel, frame_centres(n, fps), 40, 12), eager, atol=1e-4)
    # the first frame's window reaches before the audio: log-silence there, the audio after
    assert torch.all(eager[0, :30] < -11) and not torch.all(eager[0, 40:] < -11)


def test_audio_features_give_the_same_mouth_windows_whole_sliced_and_from_a_live_excerpt():
    cfg = MouthModelConfig()
    wave = torch.randn(16000 * 3) * 0.1
    feats = encode_audio((wave, 16000), 25.0)
    whole = feats.mouth_windows_for(cfg)
    part = feats.slice(30, 50)
    assert torch.allclose(part.mouth_windows_for(cfg)[:], whole[30:50], atol=1e-5)
    # live mode computes the windows of frames 30..50 from an excerpt that starts 12 frames earlier
    first = 30 - 12
    excerpt = wave[first * 640:(50 + 6) * 640]
    live = mouth_windows(log_mel(excerpt, 80), 50 + 6 - first, 25.0, cfg.past_frames, cfg.future_frames)
    assert torch.allclose(live[12:32], whole[30:50], atol=1e-4)
    with pytest.raises(Exception, match="mouth windows"):
        AudioFeatures(feats.audio, 25.0, 3, feats.windows[:3], feats.speech[:3], feats.rms[:3],
                      torch.zeros(3, 10, 80)).mouth_windows_for(cfg)


def test_the_model_refuses_windows_of_another_shape_and_its_warp_shapes_stay_in_range():
    model = AudioToMouth(SMALL)
    w = torch.randn(5, SMALL.window_frames, SMALL.n_mels)
    assert model(w).shape == (5, len(MOUTH_OUTPUTS))
    with torch.no_grad():
        model.head[-1].bias[:3] = torch.tensor([3.0, -2.0, 0.5])
    shapes = model.warp_shapes(w)
    assert shapes.shape == (5, 3) and shapes.min() >= 0 and shapes.max() <= 1
    with pytest.raises(ValueError, match="windows"):
        model(torch.randn(5, SMALL.window_frames + 1, SMALL.n_mels))


def test_the_model_learns_the_mouth_and_hears_it_in_voices_it_never_heard():
    """Six made-up voices (formant scales 0.85-1.15) train it; a new voice in that range is followed at
    r > 0.8, one whose formants sit 30% higher at r > 0.7; an untrained network follows neither."""
    train = [_speaker_utterance(f"p{k}", 0.85 + 0.06 * k, 12.0, k) for k in range(6)]
    model = mt.train_mouth_model(train, SMALL, mt.MouthTrainSettings(steps=400, batch=128, augment=0.5, seed=0))
    untrained = AudioToMouth(SMALL).eval()
    for scale, floor in ((1.0, 0.8), (1.3, 0.7)):
        unseen = _speaker_utterance("new", scale, 12.0, 99)
        r = mt.score_utterance(mt.predict(model, unseen).numpy(), unseen)["r_speech"]
        assert r > floor
        assert abs(mt.score_utterance(mt.predict(untrained, unseen).numpy(), unseen)["r_speech"]) < r - 0.3


def test_calibration_makes_the_mouth_move_as_much_as_the_real_ones_in_speech_and_keeps_r():
    train = [_speaker_utterance(f"p{k}", 0.9 + 0.05 * k, 10.0, k) for k in range(4)]
    model = mt.train_mouth_model(train, SMALL, mt.MouthTrainSettings(steps=150, batch=64, augment=0))
    before = torch.cat([mt.predict(model, u)[:, 0] for u in train]).numpy()
    scale = mt.calibrate(model, train)
    after = torch.cat([mt.predict(model, u)[:, 0] for u in train]).numpy()
    real = torch.cat([u.targets[:, 0] for u in train]).numpy()
    assert scale["opening"][0] > 1  # a regression moves less than the truth
    assert after.std() == pytest.approx(real.std(), rel=0.05) and after.mean() == pytest.approx(real.mean(), abs=0.02)
    assert np.corrcoef(before, after)[0, 1] == pytest.approx(1.0, abs=1e-6)


def test_offsets_are_found_and_undone_and_folds_never_train_on_the_people_they_score():
    synced = [_speaker_utterance(f"g{k}", 1.0, 12.0, 10 + k) for k in range(3)]
    for u in synced:
        u.kind = "grid"
    late = _speaker_utterance("late", 1.0, 12.0, 20, lag=3)  # its sound runs 3 frames behind the picture
    model = mt.train_mouth_model(synced, SMALL, mt.MouthTrainSettings(steps=300, batch=128, augment=0))
    assert mt.estimate_offsets(model, [late, synced[0]]) == {late.name: -3, synced[0].name: 0}
    assert mt.estimate_offsets(model, [late], min_frames=1000) == {late.name: 0}  # too short to tell
    fixed = mt.shifted(late, -3)
    assert torch.equal(fixed.targets[3:], late.targets[:-3]) and not fixed.valid[:3].any()
    truth = _speaker_utterance("late", 1.0, 12.0, 20)  # the same voice with its picture in sync
    assert torch.allclose(fixed.targets[3:, 0], truth.targets[3:, 0], atol=0.02)
    # folds: the recipe of each fold sees only the other people
    seen = []
    real = mt.train_recipe

    def spy(utts, *args, **kwargs):
        seen.append({u.person for u in utts})
        return real(utts, *args, **kwargs)

    mt.train_recipe = spy
    try:
        people = [u.person for u in synced] + [late.person]
        folds = mt.person_folds(people, 2)
        out = mt.leave_people_out(synced + [late], folds, SMALL, mt.MouthTrainSettings(steps=20, batch=32))
    finally:
        mt.train_recipe = real
    assert sorted(out) == sorted(people)
    for held, trained in zip(folds, seen):
        assert not set(held) & trained and trained | set(held) == set(people)


def test_landmark_mouth_targets_follow_the_lip_gap_the_jaw_and_the_lip_thickness():
    from llia_core.portrait.landmarks import (CHIN, EYE_A, EYE_B, LIP_INNER_DOWN, LIP_INNER_UP, LIP_OUTER_DOWN,
                                              LIP_OUTER_UP, MOUTH_CORNERS, NOSE_TIP)

    n = 40
    pts = np.zeros((n, 468, 3), np.float32)
    pts[:, list(EYE_A), 0], pts[:, list(EYE_B), 0] = -0.43, 0.43
    pts[:, list(EYE_A) + list(EYE_B), 1] = -0.31
    gap = 0.02 + 0.1 * (np.sin(np.arange(n) / 3) > 0)
    pts[:, LIP_INNER_UP, 1] = 0.52 - gap / 2
    pts[:, LIP_INNER_DOWN, 1] = 0.52 + gap / 2
    pts[:, LIP_OUTER_UP, 1] = pts[:, LIP_INNER_UP, 1] - 0.05
    pts[:, LIP_OUTER_DOWN, 1] = pts[:, LIP_INNER_DOWN, 1] + 0.06
    pts[:, MOUTH_CORNERS[0], 0], pts[:, MOUTH_CORNERS[1], 0] = -0.3, 0.3
    pts[:, MOUTH_CORNERS, 1] = 0.52
    pts[:, NOSE_TIP, 1] = 0.2
    pts[:, CHIN, 1] = 0.9 + gap * 0.7  # the jaw drops with the mouth
    ok = np.ones(n, bool)
    ok[5] = False
    pts[5] = np.nan
    targets, valid = track_mouth(pts, ok)
    assert not valid[5].any() and valid[~ok.__invert__()].all()
    o = targets[ok, 0]
    assert np.corrcoef(o, gap[ok])[0, 1] > 0.99 and o.min() >= 0 and o.max() <= 1
    assert np.corrcoef(targets[ok, 3], gap[ok])[0, 1] > 0.99  # jaw
    assert abs(np.median(targets[ok, 4])) < 1e-6  # lip thickness against its own median


def test_the_word_time_map_sends_synthetic_words_onto_the_real_ones():
    synth = [(0.3, 0.6, "bin"), (0.6, 0.8, "blue"), (0.9, 1.2, "at")]
    real = [(1.0, 1.2, "bin"), (1.2, 1.5, "blue"), (1.5, 1.6, "at")]
    xs, ys = _time_map(synth, real)
    t = np.array([0.0, 0.3, 0.45, 0.6, 0.85, 1.2, 1.5])
    got = map_time(t, xs, ys)
    assert np.allclose(got, [0.7, 1.0, 1.1, 1.2, 1.5, 1.6, 1.9])


def test_augmentation_keeps_shapes_and_changes_the_voice_but_not_silence_into_speech():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 30, 80) - 5
    w[:32] = math.log(1e-5)  # silent windows
    a = augment_windows(w, gen)
    assert a.shape == w.shape and torch.isfinite(a).all()
    assert not torch.allclose(a[32:], w[32:])
    # silence stays far below the speech windows' level
    assert a[:32].amax() < a[32:].mean() + 1


def test_person_rules_and_grid_word_timings(tmp_path):
    from llia_core.training.data.tracks import Track, load_track, person_of, read_align, save_track

    assert person_of("x/grid/s3/bbaf2n.mp4") == "grid_s3"
    assert person_of("talking/styletalk_Obama_clip2.mp4") == person_of("talking/edtalk_uncrop_Obama.mp4") == "obama"
    assert person_of("talking/lrs2_00001.mp4") != person_of("talking/lrs2_00002.mp4")
    align = tmp_path / "a.align"
    align.write_text("0 23750 sil\n23750 29500 bin\n29500 34000 blue\n34000 74500 sil\n")
    assert read_align(align) == [(0.95, 1.18, "bin"), (1.18, 1.36, "blue")]
    track = Track("s1__a", "grid_s1", 25.0, np.zeros((50, 468, 3), np.float16), np.ones(50, bool),
                  np.zeros((50, 4), np.float32), np.ones(50, np.float32), np.zeros(32000, np.int16),
                  read_align(align))
    save_track(tmp_path / "t.npz", track)
    back = load_track(tmp_path / "t.npz")
    assert back.words == track.words and back.person == "grid_s1" and back.num_frames == 50
    inside = back.word_frames()
    assert inside[24] and inside[33] and not inside[23] and not inside[34]


def test_a_checkpoint_gets_a_mouth_model_keeping_every_other_weight_and_other_networks_are_refused():
    from llia_core.errors import CheckpointError

    demo = LLIAModel(get_config("demo-paint-full"))
    real = mt.convert_state(demo.state_dict(), get_config("real"))
    a, b = demo.state_dict(), real.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b if not k.startswith("mouth_model."))
    assert any(k.startswith("mouth_model.") for k in b) and not any(".mouth_paint." in k for k in b)
    wider = dataclasses.replace(get_config("real"), unet=dataclasses.replace(get_config("real").unet,
                                                                             block_out_channels=(32, 64, 128)))
    with pytest.raises(CheckpointError, match="networks differ"):
        mt.convert_state(demo.state_dict(), wider)


@pytest.mark.skipif(not __import__("llia_core.training.data.tts", fromlist=["x"]).have_espeak_library(),
                    reason="espeak-ng's library is not installed")
def test_espeak_reports_its_words_and_a_grid_sentence_gets_the_real_mouth_word_by_word():
    from llia_core.training.data.tts import espeak_timed
    from llia_core.training.mouth_data import synthetic_utterance

    s = espeak_timed("bin blue at f two now", "en-us", 175, 50)
    assert [w for _, _, w in s.words] == ["bin", "blue", "at", "f", "two", "now"]
    assert all(a < b for a, b, _ in s.words) and s.words[-1][1] <= len(s.waveform) / 16000 + 0.05
    n = 75
    words = ((0.95, 1.18, "bin"), (1.18, 1.36, "blue"), (1.36, 1.42, "at"), (1.42, 1.64, "f"), (1.64, 1.89, "two"),
             (1.89, 2.12, "now"))
    targets = torch.zeros(n, len(MOUTH_OUTPUTS))
    targets[:, 0] = torch.arange(n) / n  # a ramp: where a synthetic frame reads it says which real time it got
    real = Utterance("s1", "grid_s1", "grid", torch.zeros(301, 80), targets,
                     torch.ones(n, len(MOUTH_OUTPUTS), dtype=torch.bool), torch.zeros(n, dtype=torch.bool), 25.0,
                     "s1", words)
    syn = synthetic_utterance(real, "en-us+f3", 160, 60)
    assert syn is not None and syn.kind == "synthetic" and syn.person == "grid_s1"
    for (a, b, _), (ra, rb, _) in zip(syn.words, words):  # each synthetic word's middle reads the real word's middle
        k = int((a + b) / 2 * 25)
        t_real = float(syn.targets[k, 0]) * n / 25 + 0.5 / 25
        assert ra - 0.05 < t_real < rb + 0.05
    assert syn.speech.sum() > 0 and syn.mel.shape[1] == 80


def test_amplitude_normalisation_scales_each_person_to_the_average_and_keeps_the_closed_mouth():
    a = _speaker_utterance("wide", 1.0, 6.0, 1)
    b = _speaker_utterance("narrow", 1.0, 6.0, 2)
    b.targets[:, 0] *= 0.3
    syn = dataclasses.replace(b, name="b@voice", kind="synthetic")
    (na, nb), (ns,) = mt.normalise_amplitude([a, b], [syn])
    ma, mb = float(na.targets[:, 0].mean()), float(nb.targets[:, 0].mean())
    assert ma == pytest.approx(mb, rel=1e-4)  # both open as wide as the average ...
    assert ma == pytest.approx((float(a.targets[:, 0].mean()) + float(b.targets[:, 0].mean())) / 2, rel=1e-4)
    assert torch.allclose(ns.targets, nb.targets)  # ... the synthetic reading takes its person's scale
    zero = a.targets[:, 0] == 0
    assert torch.equal(na.targets[zero, 0], a.targets[zero, 0])  # a shut mouth stays shut
    assert torch.equal(na.targets[:, 1:3], a.targets[:, 1:3])  # width and roundness are already relative


def test_bilabial_onsets_count_as_shut_only_where_the_mouth_closes_against_its_own_opening():
    from llia_core.evaluation.lipsync import onset_closures

    fps = 25.0
    words = [(0.2, 0.6, "bin"), (0.6, 1.0, "green"), (1.0, 1.4, "please"), (1.4, 1.8, "now")]
    opening = np.full(50, 0.3)
    opening[5] = 0.02  # shut at "bin"'s onset (frame 5) only
    shut, other, n = onset_closures(opening, words, fps)
    assert (shut, other, n) == (0.5, 0.0, 2)
    assert onset_closures(opening * 10, words, fps)[:2] == (0.5, 0.0)  # judged on its own scale
    assert onset_closures(np.full(50, 0.3), words, fps)[:2] == (0.0, 0.0)


def test_the_draw_curve_inverts_how_the_landmarks_read_a_drawn_opening():
    model = AudioToMouth(SMALL)
    x = torch.linspace(0, 1, 11)[:, None]
    assert torch.allclose(model.drawn_opening(x), x)  # identity until measured
    drawn = np.linspace(0, 1, 21)
    read = np.maximum(0, 0.5 * drawn - 0.05)  # thin openings read as nothing, the rest at half
    model.set_draw_curve(read, drawn)
    want = np.clip((np.array([0.1, 0.2, 0.3]) + 0.05) / 0.5, 0, 1)
    got = model.drawn_opening(torch.tensor([[0.1], [0.2], [0.3]]))[:, 0].numpy()
    assert np.allclose(got, want, atol=0.02)
    assert model.drawn_opening(torch.tensor([[0.9]])).item() == pytest.approx(1.0)  # past the widest: the widest
    ys = model.draw_curve[1]
    assert torch.all(ys[1:] >= ys[:-1])
    # the curve travels with the weights (a buffer of fixed size)
    other = AudioToMouth(SMALL)
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.draw_curve, model.draw_curve)


def test_lipsync_report_names_the_photos_a_voice_left_under_3x():
    from llia_core.evaluation.lipsync import _markdown

    rows = [{"voice": v, "photo": p, "speech_silence_ratio": r, "closed_in_silence_pct": c}
            for v, p, r, c in [("a", "p1", 5.0, 100.0), ("a", "p2", 2.0, 100.0), ("b", "p1", 4.0, 90.0),
                               ("b", "p2", float("nan"), 100.0)]]
    report = {"summary": {"predicted": {}, "voices": {"rows": 4, "share_over_3x": 0.5, "min_speech_silence_ratio": 2.0,
                                                      "min_closed_in_silence_pct": 90.0}},
              "people": {"x": {"r_speech": 0.05, "offset_frames": -3}, "y": {"r_speech": 0.5, "offset_frames": 0}},
              "voices": rows}
    text = _markdown(report)
    assert "under 3x: p2 with 2 voices" in text and "p1 with" not in text  # a NaN ratio counts as a miss
    assert "90% in the worst pair" in text
    assert "x 0.05 (-3: nan)" in text and "y 0.50" not in text
    report["people"]["x"]["r_speech_offset_undone"] = 0.31
    assert "x 0.05 (-3: 0.31)" in _markdown(report)


def test_fold_scores_say_how_much_of_a_low_r_the_sources_offset_explains():
    import dataclasses

    from llia_core.evaluation.lipsync import score_folds

    model = AudioToMouth(SMALL).eval()
    u = _speaker_utterance("x", 1.0, 8.0, 1)
    pred = mt.predict(model, u)[:, 0]
    targets, valid = u.targets.clone(), u.valid.clone()
    targets[3:, 0] = pred[:-3]  # the picture 3 frames behind the sound the model hears
    valid[:3, 0] = False
    u = dataclasses.replace(u, targets=targets, valid=valid)
    row = score_folds([u], [["x"]], [model])["x"]
    assert row["offset_frames"] == 3
    assert row["r_speech_offset_undone"] > 0.99 and row["r_speech"] < row["r_speech_offset_undone"] - 0.2


def test_an_offset_found_on_the_other_half_undoes_a_real_offset_and_does_not_flatter_chance():
    model = AudioToMouth(SMALL).eval()
    u = _speaker_utterance("x", 1.0, 8.0, 1)
    pred = mt.predict(model, u).numpy()
    # in sync: the same r as recorded, and no lag found on either half
    u0 = dataclasses.replace(u, targets=torch.from_numpy(pred).clone())
    r, lags = mt.crossfit_offset_r(pred, u0)
    assert lags == (0, 0) and r == pytest.approx(mt.score_utterance(pred, u0)["r_speech"])
    # the picture 3 frames behind the sound: each half finds +3 on the other and scores near 1
    targets, valid = u.targets.clone(), u.valid.clone()
    targets[3:, 0] = torch.from_numpy(pred[:-3, 0])
    valid[:3, 0] = False
    shifted = dataclasses.replace(u, targets=targets, valid=valid)
    r, lags = mt.crossfit_offset_r(pred, shifted)
    assert lags == (3, 3) and r > 0.99 > mt.score_utterance(pred, shifted)["r_speech"] + 0.2
    # a prediction unrelated to the mouth: the best of 21 lags on the same frames reads high, the
    # cross-fitted r does not (means over 30 unrelated mouths)
    best, fitted = [], []
    for seed in range(30):
        noise = dataclasses.replace(u, targets=torch.from_numpy(
            np.convolve(np.random.default_rng(seed).normal(size=len(pred) + 4), np.ones(5) / 5, "valid")
            .astype(np.float32))[:, None].expand(-1, len(MOUTH_OUTPUTS)).contiguous())
        best.append(max(mt.score_utterance(pred, noise, lag)["r_speech"] for lag in range(-10, 11)))
        fitted.append(mt.crossfit_offset_r(pred, noise)[0])
    assert np.mean(best) > np.mean(fitted) + 0.1 and abs(np.mean(fitted)) < 0.1
    # too short to split: as recorded
    short = dataclasses.replace(u, targets=u.targets[:60], valid=u.valid[:60], speech=u.speech[:60])
    assert mt.crossfit_offset_r(pred[:60], short) == (mt.score_utterance(pred[:60], short)["r_speech"], None)


def test_the_offset_row_counts_only_the_halves_it_searched():
    from llia_core.evaluation.lipsync import _markdown, score_folds, summarise

    model = AudioToMouth(SMALL).eval()
    long_clip = _speaker_utterance("x", 1.0, 8.0, 1)
    short_clip = dataclasses.replace(_speaker_utterance("g", 1.2, 3.0, 2), kind="grid")  # 75 frames: not split
    people = score_folds([long_clip, short_clip], [["x", "g"]], [model])
    assert len(people["x"]["offset_halves"]) == 1 and people["g"]["offset_halves"] == []
    summary = summarise(people)
    assert summary["wild"]["offset_undone"]["halves"] == 2 and summary["grid"]["offset_undone"]["halves"] == 0
    assert summary["grid"]["offset_undone"]["mean"] == pytest.approx(people["g"]["r_speech"])
    text = _markdown({"summary": {"predicted": summary}, "people": people})
    row = next(line for line in text.splitlines() if "offset undone" in line)
    assert "of 2 halves found within a frame of sync" in row and "no clip long enough to split" in row
