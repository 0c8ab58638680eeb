"""Resumable training state in safetensors (no pickle): weights, EMA, AdamW moments, counters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..checkpoints import load_state_dict_strict


def save_training_state(path, model, ema, optimizer, step: int, extra: dict | None = None) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st:
                continue
            n = names[id(p)]
            tensors[f"opt.{n}.exp_avg"] = st["exp_avg"].cpu().contiguous()
            tensors[f"opt.{n}.exp_avg_sq"] = st["exp_avg_sq"].cpu().contiguous()
            tensors[f"opt.{n}.step"] = torch.as_tensor(st["step"]).float().reshape(1)
    meta = {"step": str(step), "extra": json.dumps(extra or {}), "config": model.config.to_json()}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_training_state(path, model, ema, optimizer) -> tuple[int, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    load_state_dict_strict(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
    load_state_dict_strict(ema, {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, str(path))
    for n, p in model.named_parameters():
        key = f"opt.{n}.exp_avg"
        if key in tensors:
            optimizer.state[p] = {
                "exp_avg": tensors[key].to(p.device),
                "exp_avg_sq": tensors[f"opt.{n}.exp_avg_sq"].to(p.device),
                "step": torch.tensor(float(tensors[f"opt.{n}.step"][0])),
            }
    return int(meta["step"]), json.loads(meta.get("extra", "{}"))


@torch.no_grad()
def update_ema(ema, model, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)
