"""The few ComfyUI services the nodes use, imported lazily so the pack also loads without ComfyUI."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def folder_paths():
    try:
        import folder_paths as fp  # type: ignore[import-not-found]

        return fp
    except ImportError:
        return None


def model_names() -> list[str]:
    fp = folder_paths()
    names: list[str] = []
    if fp is not None:
        try:
            names = list(fp.get_filename_list("llia"))
        except Exception:  # folder not registered yet
            names = []
    elif os.environ.get("LLIA_MODELS_DIR"):
        names = sorted(p.name for p in Path(os.environ["LLIA_MODELS_DIR"]).glob("*.safetensors"))
    return ["bundled"] + [n for n in names if n != "bundled"]


def output_directory() -> Path:
    fp = folder_paths()
    if fp is not None:
        return Path(fp.get_output_directory())
    return Path(os.environ.get("LLIA_OUTPUT_DIR", Path(tempfile.gettempdir()) / "llia_output"))


def torch_device():
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]

        return mm.get_torch_device()
    except ImportError:
        return "cpu"


def check_interrupt() -> None:
    """Raise ComfyUI's interruption exception if the user pressed Cancel (no-op outside ComfyUI)."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


_UNLOAD_CALLBACKS: list = []


def on_unload_models(callback) -> bool:
    """Call ``callback()`` whenever ComfyUI unloads its models ("Unload models" / "Free memory" in
    the menu, ``POST /free``): ComfyUI calls ``comfy.model_management.unload_all_models`` there, so
    that function is wrapped once. Returns False outside ComfyUI (nothing to hook)."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return False
    if callback not in _UNLOAD_CALLBACKS:
        _UNLOAD_CALLBACKS.append(callback)
    original = mm.unload_all_models
    if not getattr(original, "_llia_hooked", False):
        def unload_all_models(*args, **kwargs):
            for cb in list(_UNLOAD_CALLBACKS):
                try:
                    cb()
                except Exception as exc:  # a stop that fails must not block ComfyUI's own unloading
                    import logging

                    logging.warning("LLIA: stopping on unload failed: %s", exc)
            return original(*args, **kwargs)

        unload_all_models._llia_hooked = True
        mm.unload_all_models = unload_all_models
    return True


def free_memory() -> None:
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return
    mm.soft_empty_cache()


class Progress:
    """ComfyUI ProgressBar with JPEG previews when available; silent otherwise."""

    def __init__(self, total: int):
        self.total = total
        try:
            import comfy.utils  # type: ignore[import-not-found]

            self.bar = comfy.utils.ProgressBar(total)
        except (ImportError, AttributeError):  # no ComfyUI, or a folder named comfy that is not it
            self.bar = None

    def update(self, done: int, preview_rgb=None) -> None:
        if self.bar is None:
            return
        preview = None
        if preview_rgb is not None:
            from PIL import Image

            preview = ("JPEG", Image.fromarray(preview_rgb), 512)
        self.bar.update_absolute(done, self.total, preview)


def send_event(event: str, data: dict) -> None:
    try:
        from server import PromptServer  # type: ignore[import-not-found]

        PromptServer.instance.send_sync(event, data)
    except Exception:  # no server (tests, CLI) or no client connected
        pass
