"""Two pipeline stages on one CPU: the stage that sets the pace borrows the other's cores while it waits.

``PipelinedLLIA`` runs two stages at once, each on its own share of the cores. They are not equally
loaded: stage 0 (each clip's first step, a chain in which every clip waits for the previous one's
motion frames) sets the pace, and stage 1 (later steps, decoding, paste-back, encoding) waits part
of every clip (measured on 2 cores, bundled model, 512 px: 687 ms against 438 ms of 1-thread work
per 16-frame clip). ``CoreSharing`` lends stage 1's cores to stage 0 while stage 1 waits for its
next clip: stage 0 widens its thread team at its next module boundary and narrows it at the first
boundary after stage 1 has work again, and stage 1 starts that work only once it has its cores
back. The two never oversubscribe the CPU: OpenMP teams that share cores spin against each other
(measured: a 2-thread and a 1-thread matrix product at once on 2 cores did 1.44 cores of work).

Thread counts are per thread: OpenMP's (``omp_set_num_threads`` from PyTorch's own OpenMP, after
the thread's first PyTorch call) and MKL's thread-local one, where PyTorch has MKL.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager

import torch


def _native_function(names: tuple[str, ...], symbol: str):
    """``symbol`` (one int argument) from the first of PyTorch's own libraries ``names`` that has it, or None."""
    import os

    for name in names:
        path = os.path.join(os.path.dirname(torch.__file__), "lib", name)
        if os.path.exists(path):
            try:
                function = getattr(ctypes.CDLL(path), symbol)
            except (OSError, AttributeError):
                continue
            function.argtypes, function.restype = [ctypes.c_int], None
            return function
    return None


# OpenMP's per-thread count. torch.set_num_threads would also set it, but it empties oneDNN's
# kernel cache on every call: switching from 1 to 2 threads halfway through each denoiser call took
# 453, 575, 596, 717 ms over 4 calls with it, 465-488 ms with this.
_OMP_SET = _native_function(("libgomp.so.1", "libomp.so", "libiomp5.so", "libomp.dylib", "libiomp5md.dll"),
                            "omp_set_num_threads")
# mkl_service.h's mkl_set_num_threads_local is this C function (the lower-case symbol is the Fortran
# one, which takes a pointer); absent where PyTorch has no MKL (ARM, macOS).
_MKL_SET_LOCAL = _native_function(("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"),
                                  "MKL_Set_Num_Threads_Local")


def use_threads(n: int) -> None:
    """This thread's PyTorch ops run on ``n`` threads from now on (OpenMP and MKL); other threads' stay."""
    torch.get_num_threads()  # a thread's first call resets its count to the process's: let that happen first
    if _OMP_SET is None:
        torch.set_num_threads(n)
    else:
        _OMP_SET(n)
    if _MKL_SET_LOCAL is not None:
        _MKL_SET_LOCAL(n)


def restore_threads(n: int) -> None:
    """Undo :func:`use_threads` in this thread: ``n`` OpenMP threads (its count before) and MKL's
    process-wide count again, so a host's own setting (ComfyUI's) is as it was."""
    use_threads(n)
    if _MKL_SET_LOCAL is not None:
        _MKL_SET_LOCAL(0)


class CoreSharing:
    """Stage 0 (``lead``) owns ``lead`` threads, stage 1 owns ``lag``; stage 0 uses all of them
    while stage 1 waits.

    Stage 0's thread calls :meth:`boundary` between modules (``attach`` registers it as a forward
    pre-hook on a model's blocks, acting only in that thread) and :meth:`give_back` when it stops
    computing; stage 1 wraps its waits in :meth:`waiting`.
    """

    def __init__(self, lead: int, lag: int, lend: bool = True):
        self.lead, self.lag, self.lend = lead, lag, lend
        self._cond = threading.Condition()
        self._lent = False  # stage 1 is waiting: its cores may be used
        self._borrowed = False  # stage 0 runs on lead + lag threads
        self._lead_thread: int | None = None
        self.borrows = 0

    def start_lead(self) -> None:
        """Called in stage 0's thread before it computes."""
        self._lead_thread = threading.get_ident()
        use_threads(self.lead)

    def start_lag(self) -> None:
        """Called in stage 1's thread before it computes."""
        use_threads(self.lag)

    def boundary(self, *_) -> None:
        """Between two modules: stage 0 takes lent cores, or returns them once stage 1 has work."""
        if threading.get_ident() != self._lead_thread or self._lent == self._borrowed:
            return
        with self._cond:
            if self._lent and not self._borrowed:
                use_threads(self.lead + self.lag)
                self._borrowed = True
                self.borrows += 1
            elif not self._lent and self._borrowed:
                self._return()

    def _return(self) -> None:
        use_threads(self.lead)
        self._borrowed = False
        self._cond.notify_all()

    def give_back(self) -> None:
        """Stage 0 stops computing (a clip done, the end, an error): it returns borrowed cores now."""
        with self._cond:
            if self._borrowed:
                self._return()

    @contextmanager
    def waiting(self):
        """Stage 1 waits inside this block; on leaving it, it has its cores back."""
        with self._cond:
            self._lent = self.lend
        try:
            yield
        finally:
            with self._cond:
                self._lent = False
                self._cond.wait_for(lambda: not self._borrowed)

    def attach(self, module: torch.nn.Module, depth: int = 5) -> list:
        """Pre-hooks on ``module``'s submodules down to ``depth`` levels (UNet blocks, their layers);
        returns the handles to remove."""
        return [m.register_forward_pre_hook(self.boundary) for name, m in module.named_modules()
                if name and name.count(".") < depth]
