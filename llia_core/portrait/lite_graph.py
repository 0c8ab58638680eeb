"""Run a converted TFLite graph (BlazeFace, face mesh) in PyTorch: one runtime for the whole pack.

`scripts/convert_face_models.py` writes each model's operators and constants into a safetensors
file; this module replays them. Tensors are kept NCHW internally (TFLite is NHWC), so weights are
permuted once on load. Only the operators these models use are implemented; anything else is a
clear error at load time, not a wrong result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

_SUPPORTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RELU", "PRELU", "PAD", "MAX_POOL_2D", "RESHAPE",
              "CONCATENATION", "RESIZE_BILINEAR"}
_NHWC_AXIS = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1}


def _activate(x: torch.Tensor, act: int) -> torch.Tensor:
    if act == 1:
        return F.relu(x)
    if act == 3:
        return F.relu6(x)
    if act == 2:
        return x.clamp(-1, 1)
    return x


def _same_pad(x: torch.Tensor, kernel, stride, dilation=(1, 1)) -> torch.Tensor:
    """TensorFlow's SAME padding: the odd pixel goes to the bottom / right."""
    pads = []
    for size, k, s, d in zip(x.shape[2:], kernel, stride, dilation):
        eff = (k - 1) * d + 1
        total = max((math.ceil(size / s) - 1) * s + eff - size, 0)
        pads.append((total // 2, total - total // 2))
    (t, b), (l, r) = pads
    return F.pad(x, (l, r, t, b)) if t or b or l or r else x


class LiteGraph(torch.nn.Module):
    """A converted TFLite model. forward(x: 1x3xHxW float) -> list of outputs in TFLite's shapes."""

    def __init__(self, path: str | Path):
        super().__init__()
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            consts = {k: f.get_tensor(k) for k in f.keys()}
        graph = json.loads(meta["graph"])
        unknown = {op["op"] for op in graph["ops"]} - _SUPPORTED
        if unknown:
            raise ValueError(f"{Path(path).name}: operators {sorted(unknown)} are not supported")
        self.ops, self.inputs, self.outputs = graph["ops"], graph["inputs"], graph["outputs"]
        self.input_shape = graph["input_shape"]  # NHWC
        self._consts: dict[int, torch.Tensor] = {}
        for op in self.ops:
            for pos, tid in enumerate(op["in"]):
                key = f"t{tid}"
                if key not in consts or tid in self._consts:
                    continue
                value = consts[key]
                value = value.float() if value.is_floating_point() else value
                if op["op"] == "CONV_2D" and pos == 1:
                    value = value.permute(0, 3, 1, 2)  # OHWI -> OIHW
                elif op["op"] == "DEPTHWISE_CONV_2D" and pos == 1:
                    value = value.permute(3, 0, 1, 2)  # 1HWO -> O1HW
                elif op["op"] == "PRELU" and pos == 1:
                    value = value.reshape(-1)[None, :, None, None]
                self._consts[tid] = value.contiguous()
                self.register_buffer(key, self._consts[tid], persistent=False)

    def _apply(self, fn, recurse=True):  # keep the id -> tensor table in step with .to() / .float()
        super()._apply(fn, recurse)
        self._consts = {int(k[1:]): v for k, v in self._buffers.items()}
        return self

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        env: dict[int, torch.Tensor] = dict(self._consts)
        env[self.inputs[0]] = x
        for op in self.ops:
            env[op["out"][0]] = self._run(op, [env[i] if i >= 0 else None for i in op["in"]])
        outs = []
        for tid in self.outputs:
            y = env[tid]
            outs.append(y.permute(0, 2, 3, 1) if y.dim() == 4 else y)
        return outs

    def _run(self, op: dict, a: list) -> torch.Tensor:
        kind = op["op"]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, w, b = a[0], a[1], a[2] if len(a) > 2 else None
            if op["padding"] == 0:
                x = _same_pad(x, w.shape[2:], op["stride"], op["dilation"])
            groups = x.shape[1] if kind == "DEPTHWISE_CONV_2D" else 1
            y = F.conv2d(x, w, b, stride=op["stride"], dilation=op["dilation"], groups=groups)
            return _activate(y, op["act"])
        if kind == "ADD":
            return _activate(a[0] + a[1], op["act"])
        if kind == "RELU":
            return F.relu(a[0])
        if kind == "PRELU":
            x, alpha = a
            return torch.where(x >= 0, x, x * alpha)
        if kind == "PAD":
            p = a[1].tolist()  # NHWC [[0,0],[top,bottom],[left,right],[c0,c1]]
            return F.pad(a[0], (p[2][0], p[2][1], p[1][0], p[1][1], p[3][0], p[3][1]))
        if kind == "MAX_POOL_2D":
            x = a[0]
            if op["padding"] == 0:
                x = _same_pad(x, op["kernel"], op["stride"])
            return _activate(F.max_pool2d(x, op["kernel"], op["stride"]), op["act"])
        if kind == "RESHAPE":
            x = a[0].permute(0, 2, 3, 1) if a[0].dim() == 4 else a[0]
            y = x.reshape(op["shape"])
            return y.permute(0, 3, 1, 2) if y.dim() == 4 else y
        if kind == "CONCATENATION":
            axis = op["axis"]
            if a[0].dim() == 4:
                axis = _NHWC_AXIS[axis]
            return _activate(torch.cat(a, dim=axis), op["act"])
        if kind == "RESIZE_BILINEAR":
            size = a[1].tolist()
            if op["align_corners"]:
                return F.interpolate(a[0], size=size, mode="bilinear", align_corners=True)
            if not op["half_pixel_centers"]:  # TF1 legacy: source = dest * scale, no half-pixel offset
                return _legacy_resize(a[0], size)
            return F.interpolate(a[0], size=size, mode="bilinear", align_corners=False)
        raise AssertionError(kind)


def _legacy_resize(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize with TF1's sampling (src = dst * in / out, clamped), as old TFLite graphs use."""
    out = x
    for axis, (n_in, n_out) in zip((2, 3), zip(x.shape[2:], size)):
        src = torch.arange(n_out, dtype=torch.float32) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = (src - lo.float()).to(x.dtype)
        shape = [1, 1, 1, 1]
        shape[axis] = n_out
        frac = frac.reshape(shape)
        out = out.index_select(axis, lo) * (1 - frac) + out.index_select(axis, hi) * frac
    return out
