"""docs/frames.png: ground truth vs the bundled model on a held-out identity, speaking / listening / idle.

Usage: python scripts/frames_figure.py [--model bundled] [--out docs/frames.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llia_core.checkpoints import load_model  # noqa: E402
from llia_core.evaluation.evaluate import features_for, make_eval_clips, portrait_for  # noqa: E402
from llia_core.pipeline import LLIAPipeline, SamplerConfig  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="bundled")
    p.add_argument("--identity", type=int, default=40)
    p.add_argument("--out", default="docs/frames.png")
    args = p.parse_args()
    import cv2

    model = load_model(args.model)
    pipe = LLIAPipeline(model)
    kinds = ["speaking", "listening", "idle"]
    clips = make_eval_clips([args.identity], kinds, 2.0, model.config.resolution, model.config.fps)
    rows = []
    for kind, clip in zip(kinds, clips):
        n = clip.frames.shape[0]
        out = pipe.generate(portrait_for(clip), features_for(clip.audio, n, clip.fps, model.config), clip.states,
                            SamplerConfig(steps=2))
        if kind == "speaking":  # the frames where the true mouth is most and least open, in time order
            order = np.argsort(clip.mouth_open.numpy())
            pick = sorted(list(order[-4:]) + list(order[:2]))
        else:
            pick = list(np.linspace(4, n - 1, 6).astype(int))
        for label, frames in (("truth", clip.frames), ("model", out.frames)):
            tiles = [(frames[i].numpy() * 255).astype(np.uint8) for i in pick]
            row = np.concatenate(tiles, axis=1)
            bar = np.full((row.shape[0], 150, 3), 255, np.uint8)
            cv2.putText(bar, kind, (8, 56), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(bar, label, (8, 80), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (90, 90, 90), 1, cv2.LINE_AA)
            rows.append(np.concatenate([bar, row], axis=1))
    img = np.concatenate(rows, axis=0)
    cv2.imwrite(args.out, img[:, :, ::-1])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
