"""Checkpoints: one safetensors file per model, its config in the file's metadata.

Resolution order for a model name (local first, network only when asked):
1. ``"bundled"`` (or empty): the demo model shipped in ``llia_core/assets``;
2. an existing file path;
3. a file name in ComfyUI's ``models/llia`` folders (``folder_paths``) or in ``$LLIA_MODELS_DIR``;
4. ``owner/repo`` or ``owner/repo/file.safetensors`` on Hugging Face: the local cache first,
   then a download only with ``allow_download=True``.

Loading is strict: missing or unexpected tensors, shape mismatches and truncated files are
:class:`CheckpointError` naming the problem. Only safetensors is read (no pickle).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .config import LLIAConfig
from .errors import CheckpointError

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
BUNDLED_MODEL = ASSETS_DIR / "llia-demo.safetensors"
DEFAULT_FILENAME = "llia.safetensors"
FORMAT = "llia"


def comfy_models_dirs() -> list[Path]:
    """Folders ComfyUI registers for 'llia' models (empty outside ComfyUI) plus $LLIA_MODELS_DIR."""
    dirs: list[Path] = []
    try:
        import folder_paths  # type: ignore[import-not-found]

        if "llia" in folder_paths.folder_names_and_paths:
            dirs += [Path(p) for p in folder_paths.get_folder_paths("llia")]
        else:
            dirs.append(Path(folder_paths.models_dir) / "llia")
    except ImportError:
        pass
    if os.environ.get("LLIA_MODELS_DIR"):
        dirs.append(Path(os.environ["LLIA_MODELS_DIR"]))
    return dirs


def save_model(model, path, *, dtype: torch.dtype | None = None, **metadata: str) -> Path:
    """Write ``model`` (an LLIAModel) to ``path`` as safetensors with its config embedded.

    ``dtype`` (e.g. torch.float16) stores floating tensors smaller; they load back as fp32.
    The file is written next to the target and renamed, so a crash never leaves half a file.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    meta = {"format": FORMAT, "llia_config": model.config.to_json()}
    meta.update({k: str(v) for k, v in metadata.items()})
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_metadata(path) -> dict[str, str]:
    """The metadata of a checkpoint without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types for damaged headers
        raise CheckpointError(
            f"'{path.name}' is not a readable safetensors file ({type(exc).__name__}); "
            "it may be truncated or another format: download or export it again"
        ) from None


def read_config(path) -> LLIAConfig:
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "llia_config" not in meta:
        raise CheckpointError(
            f"'{Path(path).name}' is a safetensors file but not an LLIA model (no llia_config in "
            "its metadata); pick an LLIA checkpoint, e.g. one written by `python -m llia_core train`"
        )
    return LLIAConfig.from_json(meta["llia_config"])


def resolve_model_path(name_or_path: str | os.PathLike | None, *, allow_download: bool = False) -> Path:
    """Find a checkpoint file for a name, path or Hugging Face repo id (see module docstring)."""
    name = "" if name_or_path is None else str(name_or_path).strip()
    if name in ("", "bundled", "demo"):
        if not BUNDLED_MODEL.exists():
            raise CheckpointError(
                f"the bundled model {BUNDLED_MODEL} is missing; reinstall the pack or pass --model"
            )
        return BUNDLED_MODEL
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for folder in comfy_models_dirs():
        if (folder / name).is_file():
            return folder / name
    if "/" in name and not path.is_absolute() and not name.startswith("."):
        hub = _resolve_hub(name, allow_download)
        if hub is not None:
            return hub
    places = ", ".join(str(d) for d in comfy_models_dirs()) or "ComfyUI/models/llia"
    raise CheckpointError(
        f"model '{name}' was not found as a file, in {places}, or in the Hugging Face cache; "
        "check the name, put the .safetensors file in one of those folders, or enable download"
    )


def _resolve_hub(name: str, allow_download: bool) -> Path | None:
    parts = name.split("/")
    if len(parts) < 2 or not all(parts[:2]) or Path(name).exists():
        return None
    repo_id = "/".join(parts[:2])
    filename = "/".join(parts[2:]) or DEFAULT_FILENAME
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - huggingface_hub is a declared dependency
        return None
    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=True))
    except Exception:
        pass
    if not allow_download:
        return None
    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as exc:
        target = (comfy_models_dirs() or [Path("ComfyUI/models/llia")])[0]
        raise CheckpointError(
            f"could not download '{filename}' from Hugging Face repo '{repo_id}' "
            f"({type(exc).__name__}); download it by hand and place it in {target}"
        ) from None


def hub_snapshot(repo_id: str, allow_patterns: list[str], allow_download: bool, fix: str) -> Path | None:
    """A Hugging Face snapshot of ``repo_id``'s matching files: the local cache first, downloaded only
    with ``allow_download``; None when it is in neither. A failed download is a CheckpointError
    ending in ``fix``."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns, local_files_only=True))
    except Exception:
        if not allow_download:
            return None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns))
    except Exception as exc:
        raise CheckpointError(f"could not download '{repo_id}' ({type(exc).__name__}); {fix}") from None


def load_model(
    name_or_path: str | os.PathLike | None = "bundled",
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    expected_config: str | None = None,
    allow_download: bool = False,
):
    """Load an LLIAModel strictly (eval mode, no gradients)."""
    from safetensors.torch import load_file

    from .models import LLIAModel

    path = resolve_model_path(name_or_path, allow_download=allow_download)
    config = read_config(path)
    if expected_config is not None and config.name != expected_config:
        raise CheckpointError(
            f"'{path.name}' holds a '{config.name}' model but '{expected_config}' was requested; "
            f"pick a {expected_config} checkpoint or drop the config requirement"
        )
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(
            f"'{path.name}' could not be read ({type(exc).__name__}: the file is probably "
            "truncated); download or copy it again"
        ) from None
    model = LLIAModel(config)
    load_state_dict_strict(model, tensors, path.name)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_raw_checkpoint(name_or_path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the raw config dict of a checkpoint, without building its model: for converting
    checkpoints of an older design (e.g. a mouth head since replaced) into a current config."""
    from safetensors.torch import load_file

    path = resolve_model_path(name_or_path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "llia_config" not in meta:
        raise CheckpointError(f"'{path.name}' is not an LLIA model (no llia_config in its metadata)")
    return load_file(str(path)), json.loads(meta["llia_config"])


def load_state_dict_strict(model, tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy ``tensors`` into ``model``; any missing/unexpected/mis-shaped tensor is an error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} tensors of the wrong shape (e.g. {k}: {tuple(tensors[k].shape)} "
            f"vs {tuple(expected[k].shape)})"
        )
    if problems:
        raise CheckpointError(
            f"'{source}' does not match its LLIA config: {'; '.join(problems)}; "
            "it was made by another version or architecture: use a matching checkpoint"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)


def describe(path) -> str:
    """One line about a checkpoint: config name, resolution, metadata notes."""
    meta = read_metadata(path)
    cfg = json.loads(meta.get("llia_config", "{}"))
    notes = {k: v for k, v in meta.items() if k not in ("format", "llia_config")}
    return f"{Path(path).name}: config={cfg.get('name')} resolution={cfg.get('resolution')} {notes}"
