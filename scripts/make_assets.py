"""Regenerate the bundled sample assets (portrait and speech) with the project's own generator.

Usage: .venv/bin/python scripts/make_assets.py   (needs espeak-ng for the speech)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llia_core.training.data.identity import identity_from_id, split_of  # noqa: E402
from llia_core.training.data.render import FramePose, render_frame  # noqa: E402
from llia_core.training.data.speech import espeak_speech  # noqa: E402

PORTRAIT_IDENTITY = 40  # a held-out (test split) identity: never seen in training
SENTENCES = [
    "Hello! I am a talking portrait, generated in real time on a plain computer.",
    "When you speak, I listen. When nobody talks, I wait quietly.",
]


def main() -> None:
    import soundfile as sf
    from PIL import Image

    assets = ROOT / "llia_core" / "assets"
    assert split_of(PORTRAIT_IDENTITY) == "test"
    img = render_frame(identity_from_id(PORTRAIT_IDENTITY), FramePose(), 512)
    Image.fromarray(img).save(assets / "portrait.png", optimize=True)
    rng = np.random.default_rng(0)
    parts = []
    for s in SENTENCES:
        parts += [espeak_speech(s, "en-us+f3", 150, 55, rng), np.zeros(int(0.9 * 16000), np.float32)]
    wave = np.concatenate([np.zeros(int(0.3 * 16000), np.float32), *parts])
    sf.write(assets / "speech.wav", wave, 16000, subtype="PCM_16")
    print(f"wrote {assets / 'portrait.png'} and {assets / 'speech.wav'} ({len(wave) / 16000:.2f} s)")


if __name__ == "__main__":
    main()
