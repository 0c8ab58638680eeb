"""Real-video ingestion: talking-head videos -> aligned training clips with mouth targets, resumable.

Uses a real talking clip from ../shared/realfaces (read there, never copied into the repository);
skips where it is absent.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llia_core import framing
from llia_core.states import SPEAKING
from llia_core.training.data.dataset import ClipDataset, load_clip
from llia_core.training.data.videos import ingest_videos, mouth_targets
from llia_core.video_io import write_mp4

TALKING = Path(__file__).resolve().parents[2] / "shared" / "realfaces" / "talking"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    clips = sorted(TALKING.glob("mimictalk_*.mp4")) if TALKING.is_dir() else []
    if not clips:
        pytest.skip("../shared/realfaces/talking is not here")
    d = tmp_path_factory.mktemp("videos")
    shutil.copy(clips[0], d / "talker.mp4")
    t = np.arange(16000 * 2) / 16000
    flat = np.full((50, 96, 128, 3), 120, np.uint8)  # no face at all, with a tone as audio
    write_mp4(d / "empty.mp4", flat, 25, audio=(0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    return d


def test_videos_become_aligned_clips_with_mouth_targets_and_audio(videos, tmp_path, capsys):
    out = tmp_path / "data"
    reports = ingest_videos(videos, out, max_seconds=4.0, progress=False, val_names=("talker",))
    by_name = {r.name: r for r in reports}
    assert by_name["empty.mp4"].clips == 0 and by_name["empty.mp4"].note == "no usable face"
    talker = by_name["talker.mp4"]
    assert talker.frames == 100 and talker.clips >= 1
    assert talker.kept + sum(talker.dropped.values()) == talker.frames
    printed = capsys.readouterr().out
    assert "2 videos" in printed and "kept" in printed
    clips = ClipDataset(out, "val")
    assert len(clips) == talker.clips
    for clip in (clips[i] for i in range(len(clips))):
        n = clip.frames.shape[0]
        assert clip.frames.shape[1:] == (128, 128, 3) and clip.reference.shape == (128, 128, 3)
        assert clip.audio.shape == (round(n / 25 * 16000),) and np.abs(clip.audio).max() > 0.01
        assert clip.mouth_open.shape == clip.states.shape == (n,)
        assert 0 <= clip.mouth_open.min() and clip.mouth_open.max() <= 1
        assert clip.face_mask.shape == (128, 128)
    first = clips[0]
    assert np.ptp(first.mouth_open) > 0.15  # the person talks: the mouth opens and closes
    assert (first.states == SPEAKING).mean() > 0.3
    # the framing contract: the crops are steady where the face is (eyes and mouth stay put)
    face = first.frames[:, 40:100, 40:90].astype(np.float32)
    assert np.abs(np.diff(face, axis=0)).mean() < 25


def test_ingestion_resumes_without_redoing_finished_videos(videos, tmp_path):
    out = tmp_path / "data"
    ingest_videos(videos, out, max_seconds=2.0, progress=False)
    markers = sorted((out / "videos").glob("*.json"))
    assert len(markers) == 2
    stamps = {p: p.stat().st_mtime_ns for p in (out / "train").glob("*.npz")}
    assert stamps
    ingest_videos(videos, out, max_seconds=2.0, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "train").glob("*.npz")} == stamps
    index = json.loads((out / "index.json").read_text())
    assert len(index) == len(stamps) and all(load_clip(out / e["path"]).kind == "real" for e in index)


def test_mouth_targets_follow_the_renderers_scales():
    # a video resting at a 0.05 lip gap (the mesh's inner lips never quite meet): opening from there
    gap = np.array([0.05] * 20 + [0.05 + 0.13, 0.05 + 0.26, 0.45])
    width = np.full(len(gap), framing.LANDMARK_MOUTH_WIDTH)
    opening, w, rnd = mouth_targets(gap, width)
    assert np.allclose(opening[18:], [0, 0, 0.5, 1, 1]) and np.allclose(w, 0.5) and (rnd == 0).all()
    narrow = mouth_targets(np.array([0.05] * 10 + [0.2, 0.2]), np.array([1.0] * 11 + [0.7]))[2]
    assert narrow[-1] > 0.5 and narrow[-2] == 0 and narrow[0] == 0
