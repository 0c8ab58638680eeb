"""The README's animated preview: the bundled public-domain portrait speaking the bundled speech with the
bundled model, as a small looping WebP (docs/preview.webp).

    .venv/bin/python scripts/preview.py [--seconds 4] [--out docs/preview.webp]

It runs the same main job as `scripts/demo.sh` (every default) on the first seconds of the speech and
keeps the head and shoulders at half the frame rate, so the file stays small (about 300 KB).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--start", type=float, default=0.0, help="where in the bundled speech to start")
    p.add_argument("--size", type=int, default=256, help="side of the square preview, pixels")
    p.add_argument("--out", default=str(ROOT / "docs" / "preview.webp"))
    a = p.parse_args(argv)
    from PIL import Image

    from llia_core.video_io import read_video

    with tempfile.TemporaryDirectory() as tmp:
        mp4 = Path(tmp) / "preview.mp4"
        subprocess.run([sys.executable, "-m", "llia_core", "generate", "--out", str(mp4), "--quiet",
                        "--start", str(a.start), "--duration", str(a.seconds)], cwd=ROOT, check=True)
        video = read_video(mp4)
    frames = video.frames.numpy()
    # head and shoulders of the 512 px astronaut (the face sits at about (225, 120))
    h, w = frames.shape[1:3]
    side = int(min(h, w) * 0.56)
    x0, y0 = max(0, int(w * 0.44) - side // 2), max(0, int(h * 0.25) - side // 2)
    step = 2  # 12.5 frames a second: enough for a mouth, half the bytes
    images = [Image.fromarray(np.ascontiguousarray(f[y0:y0 + side, x0:x0 + side])).resize((a.size, a.size),
                                                                                       Image.LANCZOS)
              for f in frames[::step]]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(out, save_all=True, append_images=images[1:], duration=int(1000 * step / video.fps), loop=0,
                   quality=70, method=6)
    print(f"wrote {out}: {len(images)} frames, {a.size}x{a.size}, {out.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
