"""docs/real_portrait.jpg: what the main job does to a real photo, at the photo's own resolution.

Only public-domain portraits go into docs/: the bundled NASA photo of Eileen Collins (from
scikit-image's data), upright and tilted. Rows: the photo, the aligned crop the model sees (the mouth
it animates outlined), and full-size frames of the generated video (the most and least open mouths
of the speech, read by the face mesh on the generated frames). Usage: python scripts/portrait_figure.py [--model bundled] [--out docs/real_portrait.jpg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    import cv2
    import torch

    from llia_core.audio import encode_audio
    from llia_core.checkpoints import load_model
    from llia_core.cli import DEFAULT_AUDIO, DEFAULT_PORTRAIT
    from llia_core.evaluation.real import mouth_track
    from llia_core.pipeline import LLIAPipeline, SamplerConfig
    from llia_core.pipeline.output import FrameRenderer, render_clips
    from llia_core.portrait import crop_preview, load_image, prepare_portrait

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--out", default=str(ROOT / "docs" / "real_portrait.jpg"))
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.model)
    cfg = model.config
    a = cfg.audio
    audio = encode_audio(DEFAULT_AUDIO, cfg.fps, duration=args.seconds, n_mels=a.n_mels, context=a.context,
                         mel_per_token=a.mel_per_token, token_seconds=a.token_seconds)
    photo = load_image(DEFAULT_PORTRAIT)
    h, w = photo.shape[:2]
    tilted = cv2.warpAffine(photo, cv2.getRotationMatrix2D((w / 2, h / 2), -20, 1.0), (w, h),
                            borderMode=cv2.BORDER_REFLECT)
    pipe = LLIAPipeline(model)
    rows = []
    for image in (photo, tilted):
        portrait = prepare_portrait(image, cfg.resolution, view=cfg.framing)
        video = render_clips(pipe.stream(portrait, audio, None, SamplerConfig(steps=2)), FrameRenderer(portrait),
                             total_frames=audio.num_frames)
        # the mouth's motion as the face mesh reads it on the generated frames
        opening = np.nan_to_num(mouth_track(video.frames)[0], nan=0.0)
        order = np.argsort(opening)
        picks = sorted([int(order[-1]), int(order[-2]), int(order[0])])
        crop = (crop_preview(portrait).numpy() * 255).astype(np.uint8)
        crop = cv2.resize(crop, (h, h), interpolation=cv2.INTER_CUBIC)
        tiles = [image, crop] + [video.frames[i] for i in picks]
        rows.append(np.concatenate(tiles, 1))
    fig = np.concatenate(rows, 0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(fig, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    print(f"wrote {args.out} ({fig.shape[1]}x{fig.shape[0]})")


if __name__ == "__main__":
    main()
