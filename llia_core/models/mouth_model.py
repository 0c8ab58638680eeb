"""The audio-to-mouth model: a frame's mouth shape from the speech around it.

It replaces the linear head on ±100 ms of log-mel, which learned its 12 speakers' voices: on people it
never heard its mouth followed the real one at r = 0.16, and synthetic voices barely opened it. This
network reads a longer, asymmetric stretch of log-mel (``past_seconds`` back, ``future_seconds`` ahead:
the look-ahead live mode pays for in latency), normalised within the window (each mel band minus its
mean over the window: the voice's and the microphone's long-term spectrum go, the changes that words
make stay), plus the loudness against the window's loudest moment, and, in models that hear them
(``config.phones``), the English phones PocketSphinx's acoustic model hears in each 10 ms
(``audio/phones.py``; one-hot, the newest ``phone_lag`` rows left empty because live mode does not
know them yet): a speaker-independent reading that an hour of our own video cannot teach (in
leave-people-out folds over 34 people filmed in the wild, r 0.28 -> 0.34 within speech). A few strided 1-D convolutions over
time and a small MLP give the frame's mouth: the three shapes the warp and the renderer draw (opening,
width, roundness, on the training renderer's 0..1 scales) and three more the landmarks measure (jaw
drop, lip thickness, protrusion).

Each frame reads only its own window, so a clip's mouths are the same computed offline, per clip, or
live from a short excerpt (``audio.mouth_windows``); the phones come from one decoder that hears the
track in order, offline and live alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..config import MouthModelConfig

MOUTH_OUTPUTS = ("opening", "width", "roundness", "jaw", "lip_thickness", "protrusion")
WARP_OUTPUTS = 3  # opening, width, roundness: what ``mouth_warp`` and the renderer draw
DRAW_KNOTS = 21  # knots of the read -> drawn opening curve


def normalise_windows(windows: torch.Tensor, n_mels: int | None = None, phone_lag: int = 0) -> torch.Tensor:
    """(N, W, n_mels + phones) -> (N, n_mels + 1 + phones, W): bands minus their window mean, the frame's
    log energy minus the window's highest (0 at the loudest moment, very negative in silence), then the
    phone columns as they are but for the newest ``phone_lag`` rows (labels not fixed yet: zeros)."""
    x = windows.float()
    n_mels = x.shape[2] if n_mels is None else n_mels
    mel, phones = x[..., :n_mels], x[..., n_mels:]
    energy = torch.logsumexp(mel, dim=2, keepdim=True)
    loud = (energy - energy.amax(dim=1, keepdim=True)).clamp(min=-12.0) / 4.0
    bands = mel - mel.mean(dim=1, keepdim=True)
    if phones.shape[2] and phone_lag > 0:
        phones = torch.cat([phones[:, :-phone_lag], torch.zeros_like(phones[:, -phone_lag:])], dim=1)
    return torch.cat([bands / 2.0, loud, phones], dim=2).transpose(1, 2)


class AudioToMouth(nn.Module):
    """windows (N, W, n_mels + phones): log-mel and one-hot phones (``config.window_frames`` at 10 ms
    steps) -> (N, 6) mouth."""

    def __init__(self, config: MouthModelConfig):
        super().__init__()
        self.config = config
        if config.phones:  # fail at load, not mid-job, without PocketSphinx (and import it before the clock starts)
            from ..audio.phones import _model_paths

            _model_paths()
        c, w = config.width, config.window_frames
        # a pointwise projection of the bands first: the strided convolutions then work on ``width`` channels
        layers: list[nn.Module] = [nn.Conv1d(config.n_mels + 1 + config.phones, c, 1), nn.GELU()]
        length = w
        for _ in range(config.strided_layers):
            layers += [nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GELU()]
            length = math.ceil(length / 2)
        self.convs = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Sequential(nn.Linear(c * length, config.hidden), nn.GELU(), nn.Dropout(config.dropout),
                                  nn.Linear(config.hidden, len(MOUTH_OUTPUTS)))
        # opening as the landmarks read it -> opening the warp draws (``set_draw_curve``): knots (2, K); identity
        # until measured. The face mesh reads a drawn opening smaller than drawn (about half of it, and nearly
        # nothing of a thin one), so without it a predicted mouth looked half as open as the people it learned from.
        knots = torch.linspace(0, 1, DRAW_KNOTS)
        self.register_buffer("draw_curve", torch.stack([knots, knots]))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if windows.ndim != 3 or windows.shape[1:] != (cfg.window_frames, cfg.channels):
            raise ValueError(f"the mouth model reads (N, {cfg.window_frames}, {cfg.channels}) windows, not "
                             f"{tuple(windows.shape)}; make them with audio.mouth_windows")
        x = normalise_windows(windows, cfg.n_mels, cfg.phone_lag if cfg.phones else 0)  # float32, as the model stays
        return self.head(self.dropout(self.convs(x).flatten(1)))

    def warp_shapes(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, 3) opening, width, roundness in 0..1: what the warp draws (the opening through ``draw_curve``)."""
        shapes = self(windows)[:, :WARP_OUTPUTS].clamp(0, 1)
        return torch.cat([self.drawn_opening(shapes[:, :1]), shapes[:, 1:]], dim=1)

    def drawn_opening(self, opening: torch.Tensor) -> torch.Tensor:
        """Opening on the landmarks' scale -> the opening to draw, by linear interpolation between the knots."""
        xs, ys = self.draw_curve.to(opening.dtype)
        x = opening.clamp(float(xs[0]), float(xs[-1]))
        k = torch.searchsorted(xs.contiguous(), x.contiguous(), right=True).clamp(1, xs.numel() - 1)
        x0, x1, y0, y1 = xs[k - 1], xs[k], ys[k - 1], ys[k]
        return (y0 + (x - x0) / (x1 - x0).clamp(min=1e-8) * (y1 - y0)).clamp(0, 1)

    def set_draw_curve(self, read, drawn) -> None:
        """Measured ``read`` (the landmarks' opening of a drawn mouth) at increasing ``drawn`` openings -> the
        inverse map on ``DRAW_KNOTS`` evenly spaced read openings, increasing (a wider read opening never maps
        to a narrower drawn one); past the widest measured, the widest drawn."""
        import numpy as np

        read = np.maximum.accumulate(np.asarray(read, np.float64)) + np.arange(len(read)) * 1e-6
        xs = np.linspace(0, 1, DRAW_KNOTS)
        ys = np.interp(xs, read - read[0], np.asarray(drawn, np.float64))
        self.draw_curve = torch.tensor(np.stack([xs, ys]), dtype=torch.float32, device=self.draw_curve.device)


def mouth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
               weights=(2.0, 1.0, 1.0, 0.5, 0.5, 0.25)) -> torch.Tensor:
    """Weighted squared error over valid targets (valid (N, 6) bool: a video whose face was lost, or an
    output the data cannot measure, counts nothing)."""
    w = torch.tensor(weights, dtype=pred.dtype, device=pred.device) * valid.to(pred.dtype)
    return (w * (pred - target) ** 2).sum() / w.sum().clamp(min=1.0)


__all__ = ["AudioToMouth", "MOUTH_OUTPUTS", "WARP_OUTPUTS", "mouth_loss", "normalise_windows"]
