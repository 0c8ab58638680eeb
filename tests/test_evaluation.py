"""The evaluation CLI end to end on a tiny model: every metric is computed, finite and in range."""

import json
import math

import pytest

from llia_core import config as config_module
from llia_core.checkpoints import save_model
from llia_core.evaluation.run import run_eval

from conftest import tiny_config


def test_eval_reports_every_metric(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(config_module.CONFIGS, "tiny", tiny_config())
    ckpt = save_model(tiny_model, tmp_path / "tiny.safetensors")
    report = run_eval(str(ckpt), str(tmp_path / "report"), identities=1, seconds=0.6, settings=["student-1"],
                      drift_minutes=0.04, threads=1)
    row = report["settings"]["student-1"]
    assert -1 <= row["lip_sync_corr"] <= 1  # NaN fails: the measure must be defined on a talking clip
    assert 0 < row["identity_psnr_db"] < 100 and 0 <= row["mouth_closed_quiet_pct"] <= 100
    assert row["clip_boundary_ratio"] > 0 and row["state_switch_ratio"] > 0 and row["gen_fps"] > 0
    assert row["state_switch_ratio_outside_mouth"] > 0
    assert -1 <= report["ground_truth_lip_sync_corr"] <= 1 and report["ground_truth_state_switch_ratio"] > 0
    # drift: first vs last window PSNR, and how far the latents strayed (what the drift guard bounds)
    assert math.isfinite(report["drift_delta_db"]) and report["drift_minutes"] == pytest.approx(0.04)
    assert report["drift_max_colour_dev_std"] > 0 and report["drift_guard"] == 0.15
    lo, hi = report["drift_contrast_ratio_range"]
    assert 0 < lo <= 1 <= hi
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["settings"]["student-1"]["identity_psnr_db"] == row["identity_psnr_db"]
    assert "student-1" in (tmp_path / "report.md").read_text()


def test_ground_truth_scores_show_the_metric_ceiling_and_the_data_jump_at_switches():
    """On the data itself: the mouth measure follows the true opening, and at a state switch the
    mouth opens or closes at once, so the whole-frame switch ratio is far above 1."""
    from llia_core.evaluation.evaluate import ground_truth_scores, make_eval_clips
    from llia_core.training.data.render import mouth_box

    clips = make_eval_clips([0, 20], ["speaking", "switch"], 2.0, 128, 25.0)
    gt = ground_truth_scores(clips, mouth_box(128))
    assert gt["ground_truth_lip_sync_corr"] > 0.85
    assert gt["ground_truth_state_switch_ratio"] > 2.0
    print(gt)
