"""Fixed-shape fast path: the denoiser traced and frozen for one portrait and one clip shape.

Live mode runs the same call over and over (2 new frames + 1 motion frame, one portrait). The eager
UNet spends much of such a small call in Python: ~1,200 module calls per clip. TorchScript records
the call once, and freezing folds the weights and the portrait's reference features in as constants,
so later calls skip the Python and run the recorded graph. The result is the same computation (same
kernels, same order). Any other shape, portrait or guidance setting still runs the eager model.
"""

from __future__ import annotations

import warnings

import torch

from ..models import ReferenceState


class _FixedReference(torch.nn.Module):
    """The denoiser with one portrait's reference inputs held fixed (what tracing freezes in)."""

    def __init__(self, denoiser: torch.nn.Module, reference: ReferenceState, dtype: torch.dtype):
        super().__init__()
        self.denoiser = denoiser
        self.latent = reference.latent.to(dtype)
        self.mask = reference.face_mask.to(dtype)
        self.bank = {k: v.to(dtype) for k, v in reference.bank.items()}
        self.anchor = reference.mouth_anchor

    def forward(self, sample, timestep, windows, states, flags, mouth=None):
        return self.denoiser(sample, timestep, windows, states, self.latent, self.bank, self.mask, flags,
                             mouth_anchor=self.anchor, mouth=mouth)


class FrozenDenoiser:
    """``denoiser(sample, t, windows, states, flags[, mouth])`` for one reference and one input shape.

    Build it with example inputs of the shape it will serve; :meth:`serves` says whether a call
    may use it. Tracing takes about a second for the bundled model.
    """

    def __init__(self, denoiser: torch.nn.Module, reference: ReferenceState, dtype: torch.dtype,
                 sample: torch.Tensor, timestep: torch.Tensor, windows: torch.Tensor, states: torch.Tensor,
                 flags: torch.Tensor, mouth: torch.Tensor | None = None):
        self.reference = reference
        self.shapes = self._shapes(sample, windows, states, flags, mouth)
        module = _FixedReference(denoiser, reference, dtype).eval()
        inputs = (sample, timestep, windows, states, flags) + (() if mouth is None else (mouth,))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape checks, which are fixed here
            traced = torch.jit.trace(module, inputs, check_trace=False)
            self.module = torch.jit.freeze(traced)
            for _ in range(2):  # TorchScript optimises the graph on its first runs
                self.module(*inputs)

    @staticmethod
    def _shapes(*tensors) -> tuple:
        return tuple(None if x is None else (tuple(x.shape), x.dtype) for x in tensors)

    def serves(self, reference: ReferenceState, sample, windows, states, flags, mouth=None) -> bool:
        return reference is self.reference and self._shapes(sample, windows, states, flags, mouth) == self.shapes

    def __call__(self, sample, timestep, windows, states, flags, mouth=None) -> torch.Tensor:
        inputs = (sample, timestep.reshape(sample.shape[0]), windows, states, flags) + (() if mouth is None else (mouth,))
        with torch.no_grad():
            return self.module(*inputs)
