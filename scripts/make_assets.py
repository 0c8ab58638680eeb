"""Regenerate the bundled sample assets: the portrait and the speech.

The portrait is NASA's public-domain photo of astronaut Eileen Collins as scikit-image ships it
(skimage/data/astronaut.png, 512x512); the speech is made by the project's own generator.
Usage: pip install --no-deps scikit-image && .venv/bin/python scripts/make_assets.py
(needs espeak-ng for the speech)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llia_core.training.data.speech import espeak_speech  # noqa: E402
SENTENCES = [
    "Hello! I am a talking portrait, generated in real time on a plain computer.",
    "When you speak, I listen. When nobody talks, I wait quietly.",
]


def astronaut() -> Path:
    """skimage/data/astronaut.png, found without importing scikit-image."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the photo first: pip install --no-deps scikit-image")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png"


def main() -> None:
    import shutil

    import soundfile as sf

    assets = ROOT / "llia_core" / "assets"
    shutil.copyfile(astronaut(), assets / "portrait.png")
    rng = np.random.default_rng(0)
    parts = []
    for s in SENTENCES:
        parts += [espeak_speech(s, "en-us+f3", 150, 55, rng), np.zeros(int(0.9 * 16000), np.float32)]
    wave = np.concatenate([np.zeros(int(0.3 * 16000), np.float32), *parts])
    sf.write(assets / "speech.wav", wave, 16000, subtype="PCM_16")
    print(f"wrote {assets / 'portrait.png'} and {assets / 'speech.wav'} ({len(wave) / 16000:.2f} s)")


if __name__ == "__main__":
    main()
