"""Images in: any path, PIL image, array or ComfyUI IMAGE -> uint8 RGB (H, W, 3)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import PortraitError

MAX_SIDE = 2048  # the model works at <= 512 px; bigger inputs are reduced on load
MIN_SIDE = 32


def _from_pil(img) -> np.ndarray:
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if max(img.size) > MAX_SIDE:
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        arr = arr / (65535.0 if arr.max() > 255 else 255.0)
        return _from_array(arr)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (128, 128, 128, 255))
        img = Image.alpha_composite(bg, img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _from_array(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 4:
        if arr.shape[0] == 0:
            raise PortraitError("the image batch is empty; connect an image")
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise PortraitError(f"an image must be (H, W), (H, W, C) or (B, H, W, C) with C in 1/3/4, not {arr.shape}")
    if arr.dtype == np.uint16:
        arr = arr.astype(np.float64) / 65535.0
    if arr.dtype != np.uint8:
        arr = np.asarray(arr, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise PortraitError("the image contains NaN or infinite values; pass a valid image")
        if arr.max() > 1.0 + 1e-6:
            arr = arr / 255.0
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    if arr.shape[-1] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255
        arr = (arr[..., :3] * alpha + 128 * (1 - alpha) + 0.5).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


class PortraitNote(UserWarning):
    """Something a user should know about how their picture was read (``prepare_portrait`` lists it in
    the portrait's notes)."""


def _first_video_frame(path: Path) -> np.ndarray | None:
    """The first frame of a video file (with a note that it is used as the portrait); None if ``path``
    is not a video."""
    import warnings

    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            frame = next(container.decode(video=0))
            rgb = frame.to_ndarray(format="rgb24")
    except Exception:
        return None
    warnings.warn(f"'{path.name}' is a video: its first frame is the portrait (to pick another frame, save it "
                  "as PNG or JPEG)", PortraitNote, stacklevel=3)
    return np.ascontiguousarray(rgb)


def load_image(source) -> np.ndarray:
    """Any image source -> uint8 RGB (H, W, 3); transparency is composited over mid grey."""
    from PIL import Image

    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise PortraitError(f"image file '{path}' does not exist; check the path")
        try:
            Image.MAX_IMAGE_PIXELS = 200_000_000
            with Image.open(path) as img:
                img.draft("RGB", (MAX_SIDE, MAX_SIDE))
                img.load()
                rgb = _from_pil(img)
        except PortraitError:
            raise
        except Exception:
            rgb = _first_video_frame(path)
            if rgb is None:
                raise PortraitError(
                    f"could not read '{path.name}' as an image (corrupt, truncated or not an image); "
                    "re-save it as PNG or JPEG"
                ) from None
    elif isinstance(source, Image.Image):
        rgb = _from_pil(source)
    elif isinstance(source, torch.Tensor):
        rgb = _from_array(source.detach().cpu().float().numpy() if source.is_floating_point()
                          else source.detach().cpu().numpy())
    elif isinstance(source, np.ndarray):
        rgb = _from_array(source)
    else:
        raise PortraitError(f"cannot read an image from a {type(source).__name__}; pass a path or an image")
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise PortraitError(f"the image is only {w}x{h} pixels; use a portrait of at least {MIN_SIDE}x{MIN_SIDE}")
    if max(h, w) > MAX_SIDE:
        import cv2

        s = MAX_SIDE / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return rgb
