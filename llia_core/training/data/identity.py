"""Who is drawn: random but deterministic cartoon identities, split by identity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SKIN = [(255, 224, 196), (241, 194, 155), (224, 172, 125), (198, 134, 92), (160, 102, 66), (121, 77, 48),
        (92, 58, 38), (250, 210, 180), (210, 160, 120), (180, 120, 85)]
HAIR = [(30, 25, 20), (60, 40, 25), (110, 70, 35), (160, 110, 60), (220, 190, 120), (200, 90, 40),
        (120, 120, 125), (235, 235, 235), (80, 30, 90), (40, 60, 140)]
IRIS = [(70, 45, 25), (40, 90, 140), (60, 110, 60), (110, 80, 40), (90, 90, 100)]
HAIR_STYLES = ("short", "long", "bob", "bald", "curly", "bun")


@dataclass(frozen=True)
class IdentityParams:
    identity_id: int
    face_w: float  # head half-width scale (1 = face box half side)
    face_h: float  # head half-height scale
    jaw: float  # 0 = pointed/oval chin, 1 = square
    skin: tuple
    hair_style: str
    hair_color: tuple
    hair_volume: float
    eye_size: float
    eye_spacing: float
    iris: tuple
    brow_thick: float
    brow_angle: float
    brow_color: tuple
    nose_size: float
    lip_color: tuple
    lip_thick: float
    mouth_width: float
    shirt: tuple
    neckline: str
    glasses: bool
    glasses_color: tuple
    background: tuple
    background2: tuple
    background_kind: str
    ear_size: float


def _color(rng, palette, jitter=12):
    base = np.array(palette[int(rng.integers(len(palette)))], dtype=float)
    return tuple(int(v) for v in np.clip(base + rng.normal(0, jitter, 3), 0, 255))


def sample_identity(rng: np.random.Generator, identity_id: int = 0) -> IdentityParams:
    skin = _color(rng, SKIN, 8)
    lip = tuple(int(v) for v in np.clip(np.array(skin) * [0.85, 0.55, 0.55] + rng.normal(0, 8, 3), 0, 255))
    bg = tuple(int(v) for v in rng.integers(40, 235, 3))
    return IdentityParams(
        identity_id=identity_id,
        face_w=float(rng.uniform(0.92, 1.05)),
        face_h=float(rng.uniform(1.12, 1.3)),
        jaw=float(rng.uniform(0, 1)),
        skin=skin,
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        hair_color=_color(rng, HAIR),
        hair_volume=float(rng.uniform(0.9, 1.25)),
        eye_size=float(rng.uniform(0.8, 1.2)),
        eye_spacing=float(rng.uniform(0.9, 1.1)),
        iris=_color(rng, IRIS, 10),
        brow_thick=float(rng.uniform(0.6, 1.5)),
        brow_angle=float(rng.uniform(-8, 8)),
        brow_color=_color(rng, HAIR[:6], 10),
        nose_size=float(rng.uniform(0.8, 1.25)),
        lip_color=lip,
        lip_thick=float(rng.uniform(0.8, 1.3)),
        mouth_width=float(rng.uniform(0.85, 1.15)),
        shirt=tuple(int(v) for v in rng.integers(20, 235, 3)),
        neckline=("round", "v", "collar")[int(rng.integers(3))],
        glasses=bool(rng.random() < 0.25),
        glasses_color=_color(rng, [(20, 20, 20), (120, 60, 20), (160, 160, 170)], 10),
        background=bg,
        background2=tuple(int(v) for v in np.clip(np.array(bg) + rng.normal(0, 40, 3), 0, 255)),
        background_kind=("flat", "gradient", "two_tone")[int(rng.integers(3))],
        ear_size=float(rng.uniform(0.85, 1.15)),
    )


def identity_from_id(identity_id: int) -> IdentityParams:
    return sample_identity(np.random.default_rng(1_000_003 + int(identity_id)), int(identity_id))


def split_of(identity_id: int) -> str:
    """Deterministic split by identity: test identities are never seen in training."""
    r = int(identity_id) % 20
    return "test" if r == 0 else "val" if r == 1 else "train"
