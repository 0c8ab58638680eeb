"""Whisper encoder features (paper-scale models), as EchoMimic, Sonic, MuseTalk and LatentSync use them.

A model whose ``config.audio.features`` is ``"whisper"`` reads, instead of log-mel, the last hidden
state of a Whisper encoder (whisper-tiny: 384 wide, 50 per second), repeated to the log-mel's
100 rows per second so the same per-frame windows (``frame_windows``) apply. The encoder runs on
30-second chunks, as Whisper was trained.

Optional: ``pip install 'llia[whisper]'`` (Hugging Face ``transformers``); the weights are opt-in
and local first: a folder passed as ``whisper``, ``$LLIA_WHISPER``, ``whisper-tiny/`` in the LLIA
model folders, then the Hugging Face cache of ``openai/whisper-tiny``; downloaded only when asked
(``allow_download=True``). The log-mel path stays the default for small models.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from ..errors import AudioError

WHISPER_TINY = "openai/whisper-tiny"
CHUNK_SECONDS = 30
_RATE = 16000
_SAMPLES_PER_ROW = 320  # Whisper's encoder: one hidden state per 20 ms


def _transformers():
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise AudioError("this model reads Whisper features, which need Hugging Face transformers: "
                         "pip install 'llia[whisper]' (or pip install transformers)") from None
    from transformers import WhisperFeatureExtractor, WhisperModel

    return WhisperFeatureExtractor, WhisperModel


def resolve_whisper(name_or_path: str | os.PathLike | None = None, *, allow_download: bool = False) -> Path:
    """The folder of a Whisper checkpoint (config, weights, preprocessor config)."""
    from ..checkpoints import comfy_models_dirs, hub_snapshot

    candidates = [name_or_path, os.environ.get("LLIA_WHISPER")]
    candidates += [d / "whisper-tiny" for d in comfy_models_dirs()]
    for c in candidates:
        if c and Path(c).expanduser().is_dir():
            return Path(c).expanduser()
    repo = str(name_or_path) if name_or_path and "/" in str(name_or_path) else WHISPER_TINY
    files = ["config.json", "preprocessor_config.json", "model.safetensors"]
    path = hub_snapshot(repo, files, allow_download, "download it by hand and set $LLIA_WHISPER to its folder")
    if path is None:
        raise AudioError(f"no Whisper encoder found (looked for a folder in $LLIA_WHISPER, whisper-tiny/ in the "
                         f"LLIA model folders, and '{repo}' in the Hugging Face cache); download it once with "
                         "allow_download / --allow-download, or put the folder there")
    return path


@functools.lru_cache(maxsize=2)
def load_whisper(path: str) -> tuple:
    """(feature extractor, encoder in eval mode) of the checkpoint folder ``path``; cached."""
    extractor_cls, model_cls = _transformers()
    extractor = extractor_cls.from_pretrained(path)
    encoder = model_cls.from_pretrained(path).get_encoder().eval().requires_grad_(False)
    return extractor, encoder


@torch.no_grad()
def whisper_rows(waveform: torch.Tensor, whisper: str | os.PathLike | None = None, *,
                 allow_download: bool = False) -> torch.Tensor:
    """16 kHz mono (T,) -> (1 + max(T, 400) // 160, width) encoder states at the log-mel's 100 rows/s."""
    extractor, encoder = load_whisper(str(resolve_whisper(whisper, allow_download=allow_download)))
    wave = torch.as_tensor(waveform).reshape(-1).float().cpu().numpy()
    rows = []
    step = CHUNK_SECONDS * _RATE
    for a in range(0, max(1, len(wave)), step):
        chunk = wave[a:a + step]
        feats = extractor(chunk, sampling_rate=_RATE, return_tensors="pt").input_features
        p = next(encoder.parameters())
        hidden = encoder(feats.to(p.device, p.dtype)).last_hidden_state[0].float().cpu()
        keep = -(-max(1, len(chunk)) // _SAMPLES_PER_ROW)
        rows.append(hidden[:keep])
    states = torch.cat(rows).repeat_interleave(2, dim=0)  # 50 -> 100 per second
    n = 1 + max(len(wave), 400) // 160
    if states.shape[0] < n:
        states = torch.cat([states, states[-1:].expand(n - states.shape[0], -1)])
    return states[:n].contiguous()
