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
    assert -1 <= row["lip_sync_corr"] <= 1 or math.isnan(row["lip_sync_corr"])
    assert 0 < row["identity_psnr_db"] < 100 and 0 <= row["mouth_closed_quiet_pct"] <= 100
    assert row["clip_boundary_ratio"] > 0 and row["state_switch_ratio"] > 0 and row["gen_fps"] > 0
    # drift: first vs last window PSNR, and how far the latents strayed (what the drift guard bounds)
    assert math.isfinite(report["drift_delta_db"]) and report["drift_minutes"] == pytest.approx(0.04)
    assert report["drift_max_colour_dev_std"] > 0 and report["drift_guard"] == 0.15
    lo, hi = report["drift_contrast_ratio_range"]
    assert 0 < lo <= 1 <= hi
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["settings"]["student-1"]["identity_psnr_db"] == row["identity_psnr_db"]
    assert "student-1" in (tmp_path / "report.md").read_text()
