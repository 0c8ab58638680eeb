"""Paste-back: generated crops composited into the portrait at its own resolution.

Only the face changes, and it keeps the picture's own sharpness: what is pasted is not the 128 px
crop itself but what the model changed, the generated crop minus the reference crop it started
from, warped back by the inverse of the portrait's alignment and added to the full-resolution
picture. For models that move the mouth by a warp (``config.reference_warp``) the same analytic
warp (``models/mouth_warp.py``) moves the full-resolution pixels, and what the warp cannot show, the
inside of an open mouth, is drawn here at full resolution (a dark interior, the upper front teeth
in the picture's own light) instead of the model's 128 px version of it, which upscaled to a
blurred lens. It is blended in with a soft mask that follows the face (the face mesh's outline, widened
a little and lengthened below the chin so an opening jaw stays inside; without landmarks the
contract's face ellipse), so every pixel outside it is the user's own. The mask is also cut to the
part of the crop that saw the picture, so no repeated edge pixels ever reach a video.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import framing
from ..video_io import to_uint8
from .crop import Portrait
from .landmarks import FACE_OVAL

OUTPUTS = ("full", "crop")  # the portrait's own size | the model's square crop
DEFAULT_MAX_SIZE = 1024
INTERIOR_SHADE = 0.75  # how much darker than the lips the middle of an open mouth is drawn
TEETH_TINT = (0.82, 0.79, 0.72)  # of the face's brightest skin: a warm off-white, in the mouth's shade


def output_size(portrait: Portrait, max_size: int | None = DEFAULT_MAX_SIZE) -> tuple[int, int]:
    """(width, height) of the full-resolution video: the picture's size, the long side capped at
    ``max_size`` (None or 0 = no cap)."""
    w, h = portrait.source_size
    if not max_size or max(w, h) <= max_size:
        return w, h
    s = max_size / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def face_paste_mask(portrait: Portrait, width: int, height: int) -> np.ndarray:
    """(height, width) float32 0..1: where generated pixels replace the picture's, at output size."""
    import cv2

    sx, sy = width / portrait.source_size[0], height / portrait.source_size[1]
    r = portrait.resolution
    to_out = lambda pts: np.asarray(pts, np.float64) * [sx, sy]  # noqa: E731
    mask = np.zeros((height, width), np.float32)
    if portrait.landmarks is not None:
        crop_pts = portrait.alignment.to_crop(portrait.landmarks.xy[list(FACE_OVAL)])
        centre = crop_pts.mean(0)
        grown = centre + (crop_pts - centre) * 1.08
        below = np.clip(grown[:, 1] - centre[1], 0, None)  # lengthen the lower half for the open jaw
        grown[:, 1] += below * 0.18
        poly = to_out(portrait.alignment.to_source(grown))
        size = float(np.ptp(poly[:, 1]))
    elif portrait.face_box is not None:
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        u = portrait.view.unit(r)
        (cx, cy), = portrait.view.to_pixels([[0.0, 0.0]], r)  # the face box's centre in this crop
        ellipse = np.stack([cx + 1.2 * u * np.cos(t), cy + 1.3 * u * np.sin(t)], 1)
        poly = to_out(portrait.alignment.to_source(ellipse))
        size = float(np.ptp(poly[:, 1]))
    else:  # crop mode "whole": the whole crop square
        poly = to_out(portrait.alignment.crop_corners())
        size = float(np.ptp(poly[:, 1])) * 0.5
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    # feather inwards: erode by the blur's reach so the soft edge stays on the face's own outline
    feather = max(1.0, 0.05 * size)
    k = int(2 * round(feather) + 1)
    mask = cv2.erode(mask, np.ones((k, k), np.uint8))
    mask = cv2.GaussianBlur(mask, (0, 0), feather / 1.5)
    # never past the part of the crop that saw the picture
    corners = to_out(portrait.alignment.crop_corners())
    inside = np.zeros_like(mask)
    cv2.fillConvexPoly(inside, np.round(corners * 16).astype(np.int32), 1.0, cv2.LINE_AA, 4)
    return np.clip(mask * inside, 0, 1)


class Compositor:
    """Generated crops (F, R, R, 3) -> frames (F, H, W, 3) uint8 of the portrait's own size.

    Prepared once per portrait: the background at output size, the inverse warp and the mask,
    cut to the face's bounding box so that each frame touches only that region, and the reference
    crop whose difference to each generated crop is pasted (detail transfer).
    The mouth warp of ``paste(..., mouth=...)`` works in the portrait's framing (``portrait.view``); ``interior_shade``:
    how much darker than the lips' colour the middle of an open mouth is drawn (0: the inside is
    not drawn: the lip line's colour the warp reads there, the model's residual on top);
    ``teeth``: draw the upper front teeth under the upper lip, in the picture's own light. With
    either, the opening is the compositor's alone: the model's 128 px version of it stays out.
    ``painter``: a ``MouthPainter`` (the model's ``mouth_painter``) paints the opening instead of
    the drawn shade and teeth, at the mouth's own size (``models/mouth_painter.py``).
    """

    def __init__(self, portrait: Portrait, max_size: int | None = DEFAULT_MAX_SIZE,
                 interior_shade: float = INTERIOR_SHADE, teeth: bool = True, painter=None):
        import cv2

        if painter is not None:  # the painter's opening replaces the drawn one
            interior_shade, teeth = 0.0, False
        self.painter, self._opening = painter, None
        self.portrait, self.view, self.interior_shade = portrait, portrait.view, interior_shade
        self.reference = np.ascontiguousarray(portrait.image.permute(1, 2, 0).numpy() * 255, np.float32)

        self.width, self.height = output_size(portrait, max_size)
        w0, h0 = portrait.source_size
        interp = cv2.INTER_AREA if self.width < w0 else cv2.INTER_CUBIC
        bg = portrait.source if (self.width, self.height) == (w0, h0) else \
            cv2.resize(portrait.source, (self.width, self.height), interpolation=interp)
        self.background = np.ascontiguousarray(bg)
        mask = face_paste_mask(portrait, self.width, self.height)
        ys, xs = np.nonzero(mask > 1e-3)
        if len(xs) == 0:
            self.box = (0, 0, 0, 0)
            return
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        self.box = (int(x0), int(y0), int(x1), int(y1))
        self.alpha = np.ascontiguousarray(mask[y0:y1, x0:x1], np.float32)
        self.base = np.ascontiguousarray(self.background[y0:y1, x0:x1])
        # crop pixels -> output pixels of the box
        inv = portrait.alignment.inverse
        scale = np.array([[self.width / w0, 0], [0, self.height / h0]])
        m = scale @ inv
        m[:, 2] -= (x0, y0)
        self.to_box = m
        self.base_f = self.base.astype(np.float32)
        self.alpha3 = np.ascontiguousarray(np.repeat(self.alpha[..., None], 3, -1))
        self._units = None
        self.mouth_colour = self._lip_colour()
        self.teeth_colour = None
        if teeth:
            self.teeth_colour = teeth_colour(self.base_f[self.alpha > 0.5] if (self.alpha > 0.5).any()
                                             else self.base_f.reshape(-1, 3))

    def _lip_colour(self) -> np.ndarray:
        """(3,) the lips' colour: the reddest third of the crop's pixels on the lips around the mouth
        anchor. The inside of an open mouth is drawn as it, darkened: the lip line itself, which the
        warp reads there, can be anything (a grin closed by the expression template leaves teeth and
        shadow on it, which drew a grey-blue mouth)."""
        r = self.portrait.resolution
        anchor = self.portrait.mouth_anchor
        ax, ay, s = (0.0, framing.MOUTH_CENTRE_Y, 1.0) if anchor is None else (float(v) for v in anchor)
        xs = np.linspace(ax - 0.15 * s, ax + 0.15 * s, 13)
        ys = np.concatenate([np.linspace(ay - 0.07 * s, ay - 0.02 * s, 4), np.linspace(ay + 0.02 * s, ay + 0.08 * s, 4)])
        px0, py0 = self.view.to_pixels([[0.0, 0.0]], r)[0]
        u = self.view.unit(r)
        px = np.clip(np.round(xs[None] * u + px0 - 0.5), 0, r - 1).astype(int)
        py = np.clip(np.round(ys[:, None] * u + py0 - 0.5), 0, r - 1).astype(int)
        return lip_colour(self.reference[py, px].reshape(-1, 3))

    def _box_units(self):
        """Face-box units (framing contract) of every output pixel of the box, (1, h, w) each."""
        if self._units is None:
            x0, y0, x1, y1 = self.box
            full = np.vstack([self.to_box, [0, 0, 1]])
            back = np.linalg.inv(full)[:2]  # box pixels -> crop pixels
            ys, xs = np.mgrid[0:y1 - y0, 0:x1 - x0].astype(np.float64)  # pixel centres, as cv2 counts them
            cx = back[0, 0] * xs + back[0, 1] * ys + back[0, 2]
            cy = back[1, 0] * xs + back[1, 1] * ys + back[1, 2]
            r = self.portrait.resolution
            u, cy0 = self.view.unit(r), self.view.centre_y
            self._units = (torch.from_numpy(((cx - r / 2) / u)[None].astype(np.float32)),
                           torch.from_numpy(((cy - r / 2) / u + cy0)[None].astype(np.float32)))
        return self._units

    def _moving(self, ux: torch.Tensor, uy: torch.Tensor) -> tuple[slice, slice]:
        """The rows and columns of a grid of face-box units that any mouth shape can move (the warp
        is the identity elsewhere), so each frame computes and resamples only those."""
        from ..models.mouth_warp import mouth_source

        extremes = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        anchor = self.portrait.mouth_anchor
        moved = torch.zeros(ux.shape[1:], dtype=torch.bool)
        for m in extremes:
            sx, sy = mouth_source(ux, uy, m[None], None if anchor is None else anchor.reshape(1, 3))
            moved |= ((sx - ux).abs() + (sy - uy).abs())[0] > 1e-5
        ys, xs = np.nonzero(moved.numpy())
        if len(xs) == 0:
            return slice(0, 0), slice(0, 0)
        return slice(max(0, ys.min() - 2), ys.max() + 3), slice(max(0, xs.min() - 2), xs.max() + 3)

    def _grids(self):
        """The moving part of the box (output pixels) and of the crop, in face-box units: (slices, ux, uy) each."""
        if getattr(self, "_box_grid", None) is None:
            ux, uy = self._box_units()
            rows, cols = self._moving(ux, uy)
            self._box_grid = ((rows, cols), ux[:, rows, cols].contiguous(), uy[:, rows, cols].contiguous())
            r = self.portrait.resolution
            xs, ys = self.view.axes(r)
            cx, cy = xs[None, None, :].expand(1, r, r), ys[None, :, None].expand(1, r, r)
            rows, cols = self._moving(cx, cy)
            self._crop_grid = ((rows, cols), cx[:, rows, cols].contiguous(), cy[:, rows, cols].contiguous())
            # both grids in one flat list: each frame runs the warp's geometry once for the two
            self._flat = (torch.cat([self._box_grid[1].reshape(-1), self._crop_grid[1].reshape(-1)])[None],
                          torch.cat([self._box_grid[2].reshape(-1), self._crop_grid[2].reshape(-1)])[None])
        return self._box_grid, self._crop_grid

    def _warp_maps(self, mouth) -> dict:
        """The warp for one mouth shape (3,) on both grids: source points and opening depth (cached
        for the last shape: ``paste`` asks for the reference's and the picture's)."""
        from ..models.mouth_warp import source_and_interior

        key = key_of(mouth)
        if getattr(self, "_last_maps", None) is not None and self._last_maps[0] == key:
            return self._last_maps[1]
        box, crop = self._grids()
        anchor = self.portrait.mouth_anchor
        sx, sy, depth, teeth, light = source_and_interior(*self._flat, torch.tensor([key], dtype=torch.float32),
                                                         None if anchor is None else anchor.reshape(1, 3))
        n = box[1].numel()
        split = lambda t, grid, a, b: t[0, a:b].numpy().reshape(grid[1].shape[1:])  # noqa: E731
        maps = {"box": tuple(split(t, box, 0, n) for t in (sx, sy, depth, teeth, light)),
                "crop": (split(sx, crop, n, None), split(sy, crop, n, None))}
        self._last_maps = (key, maps)
        return maps

    def warped_base(self, mouth) -> np.ndarray:
        """The box of the full-resolution picture with the mouth moved to ``mouth`` (3,)."""
        import cv2

        (rows, cols), _, _ = self._grids()[0]
        sx, sy, depth, teeth, light = self._warp_maps(mouth)["box"]
        r = self.portrait.resolution
        u = self.view.unit(r)
        cx, cy = sx * u + r / 2, (sy - self.view.centre_y) * u + r / 2  # crop pixels
        m = self.to_box
        mx = (m[0, 0] * cx + m[0, 1] * cy + m[0, 2]).astype(np.float32)
        my = (m[1, 0] * cx + m[1, 1] * cy + m[1, 2]).astype(np.float32)
        out = self.base_f.copy()
        if mx.size:
            moved = cv2.remap(self.base_f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            if self.interior_shade and depth.any():  # the parted lips show the dark inside of a mouth
                w = np.clip(depth / 0.1, 0, 1)[..., None]  # the lips' own colour, not the lip line's
                moved += w * (self.mouth_colour - moved)
                moved *= (1 - self.interior_shade * np.sqrt(depth))[..., None]
            if self.teeth_colour is not None and teeth.any():
                a = teeth[..., None]
                moved += a * (self.teeth_colour * light[..., None] - moved)
            near = _around(depth > 0, 2)
            if near is not None:  # the opening's outline is a hard edge of the warp: smooth it over a pixel
                part = moved[near]
                rim = cv2.GaussianBlur((depth[near] > 0).astype(np.float32), (3, 3), 0)
                rim = (4 * rim * (1 - rim))[..., None]
                part += rim * (cv2.GaussianBlur(part, (3, 3), 0) - part)
            out[rows, cols] = moved
            self._opening = None
            if self.painter is not None and depth.any():
                self._opening = (key_of(mouth), self._paint(out, rows, cols, depth))
        return out

    def _paint(self, out: np.ndarray, rows: slice, cols: slice, depth: np.ndarray) -> np.ndarray:
        """The painter's opening drawn into ``out`` (the box, the mouth moved) in place; -> its alpha
        over the moving part of the box (``rows``, ``cols``)."""
        import cv2

        from ..models.mouth_painter import SIZE, drawn_opening, feathered, window_matrix

        w, h = SIZE
        if getattr(self, "_window", None) is None:  # box pixels -> window pixels, and the photo's own mouth
            self._window = window_matrix(source_to_crop=cv2.invertAffineTransform(self.to_box),
                                         resolution=self.portrait.resolution, view=self.view)
            ref = cv2.warpAffine(self.base_f, self._window, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
            self._window_ref = torch.from_numpy(ref).permute(2, 0, 1)[None] / 127.5 - 1
        win = cv2.warpAffine(out, self._window, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        sub = self._window @ np.array([[1, 0, cols.start], [0, 1, rows.start], [0, 0, 1]], np.float64)
        hard = cv2.warpAffine((depth > 0).astype(np.float32), sub, (w, h), flags=cv2.INTER_LINEAR) > 0.5
        opening = torch.from_numpy(hard.astype(np.float32))[None, None]
        mask = feathered(opening)
        drawn = torch.from_numpy(drawn_opening(win, hard)).permute(2, 0, 1)[None] / 127.5 - 1
        param = next(self.painter.parameters())
        with torch.no_grad():
            painted = self.painter(torch.from_numpy(win).permute(2, 0, 1)[None].to(param) / 127.5 - 1,
                                   opening.to(param), self._window_ref.to(param), (drawn * opening).to(param))
        painted = ((painted[0].float().permute(1, 2, 0) + 1) * 127.5).numpy()
        region = out[rows, cols]
        size = (region.shape[1], region.shape[0])
        flags = cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
        back = cv2.warpAffine(painted, sub, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(mask[0, 0].numpy(), sub, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        region += alpha[..., None] * (back - region)
        return alpha

    def reference_for(self, mouth) -> np.ndarray:
        """The reference crop (R, R, 3) float 0..255 as the model's warp moved it (or as it is): the
        model's ``warp_pixels`` (bilinear, edge pixels repeated), done with OpenCV on the part that moves."""
        import cv2

        if mouth is None:
            return self.reference
        r = self.portrait.resolution
        (rows, cols), _, _ = self._grids()[1]
        sx, sy = self._warp_maps(mouth)["crop"]
        u = self.view.unit(r)
        out = self.reference.copy()
        if sx.size:  # grid_sample(align_corners=False) reads pixel i at unit ((i + 0.5) / r * 2 - 1) * scale
            mx = (sx * u + r / 2 - 0.5).astype(np.float32)
            my = ((sy - self.view.centre_y) * u + r / 2 - 0.5).astype(np.float32)
            out[rows, cols] = cv2.remap(self.reference, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def new_frame(self) -> np.ndarray:
        """A (H, W, 3) frame holding the background, for ``paste`` to draw the face into."""
        return self.background.copy()

    def paste(self, crop: np.ndarray, frame: np.ndarray, mouth=None) -> np.ndarray:
        """Draw one generated crop (R, R, 3) uint8 into ``frame`` (from ``new_frame``, or a frame this
        compositor drew before: only the face box changes) and return it.

        ``mouth`` (3,): the mouth shape a warp model moved the reference to; the full-resolution
        picture is moved the same way. Without it the picture stays as it is under the change.
        """
        import cv2

        x0, y0, x1, y1 = self.box
        if x1 > x0:
            delta = crop.astype(np.float32) - self.reference_for(mouth)
            up = cv2.warpAffine(delta, self.to_box, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            source = self.base_f if mouth is None else self.warped_base(mouth)
            if mouth is not None and self._opening is not None and self._opening[0] == key_of(mouth):
                (rows, cols), _, _ = self._grids()[0]  # the painted opening is the painter's alone
                up[rows, cols] *= (1 - self._opening[1])[..., None]
            elif mouth is not None and (self.interior_shade or self.teeth_colour is not None):
                # the opening is drawn here, sharp: the model's blurred 128 px version of it stays out
                (rows, cols), _, _ = self._grids()[0]
                _, _, depth, teeth, _ = self._warp_maps(mouth)["box"]
                near = _around((depth > 0) | (teeth > 0), 0)
                if near is not None:
                    inner = np.maximum(np.clip(depth[near] / 0.2, 0, 1), teeth[near])
                    up[rows, cols][near] *= (1 - inner)[..., None]
            face = source + up
            face -= self.base_f
            face *= self.alpha3
            face += self.base_f
            np.clip(face, 0, 255, out=face)
            frame[y0:y1, x0:x1] = (face + 0.5).astype(np.uint8)
        return frame

    def composite(self, frames, mouth=None) -> np.ndarray:
        """frames: (F, R, R, 3) float 0..1 (torch or numpy) or uint8; mouth: (F, 3) or None
        -> (F, H, W, 3) uint8."""
        crops = to_uint8(frames)
        out = np.empty((len(crops), self.height, self.width, 3), np.uint8)
        out[:] = self.background
        for i, (crop, frame) in enumerate(zip(crops, out)):
            self.paste(crop, frame, None if mouth is None else mouth[i])
        return out


def lip_colour(lips: np.ndarray) -> np.ndarray:
    """(N, 3) pixels on and around the lips -> (3,) float32 the lips' colour: the median of their
    reddest third (skin and shadow between them left out)."""
    red = lips[:, 0] - 0.5 * (lips[:, 1] + lips[:, 2])
    return np.median(lips[red >= np.percentile(red, 67)], 0).astype(np.float32)


def teeth_colour(skin: np.ndarray) -> np.ndarray:
    """(N, 3) the face's pixels -> (3,) float32 the upper front teeth's colour: lit like the brightest
    skin (its top 5% by luma), a warm off-white with a little of the skin's colour, as grey as the skin
    in a grey photo."""
    luma = skin @ np.array([0.299, 0.587, 0.114], np.float32)
    bright = skin[luma >= np.percentile(luma, 95)].mean(0)
    tint = np.array(TEETH_TINT) / np.mean(TEETH_TINT)
    tint = 1 + (tint - 1) * np.clip(np.ptp(bright) / 40, 0, 1)
    white = np.clip(np.percentile(luma, 97), 60, 255) * np.mean(TEETH_TINT) * tint
    return np.float32(0.75 * white + 0.25 * bright)


def key_of(mouth) -> tuple[float, float, float]:
    """A mouth shape (3,) as a hashable key."""
    return tuple(float(v) for v in np.asarray(mouth, np.float64).reshape(3))


def _around(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The bounding box of ``mask``'s true pixels, ``margin`` pixels wider; None if there are none."""
    ys = np.flatnonzero(mask.any(1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(0))
    return (slice(max(0, ys[0] - margin), ys[-1] + margin + 1), slice(max(0, xs[0] - margin), xs[-1] + margin + 1))


def crop_frames(frames, portrait: Portrait) -> np.ndarray:
    """The crop video (``output="crop"``): the generated crops, black where the crop lies past the
    picture's edges (no invented pixels). -> (F, R, R, 3) uint8."""
    crops = to_uint8(frames)
    valid = portrait.valid
    if valid.min() >= 0.999:
        return crops
    return np.clip(crops * valid[None, :, :, None] + 0.5, 0, 255).astype(np.uint8)
