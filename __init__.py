"""LLIA for ComfyUI: real-time audio-driven talking portraits (speaking / listening / idle).

ComfyUI imports this folder as a package; outside ComfyUI it imports cleanly too. The engine,
``llia_core``, is made importable by its own name so the nodes and the CLI share one copy.
"""

import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.insert(0, _PACK_DIR)


def _register_model_folder() -> None:
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return
    path = os.path.join(folder_paths.models_dir, "llia")
    os.makedirs(path, exist_ok=True)
    try:  # append: never replace a user's extra_model_paths.yaml entry
        folder_paths.add_model_folder_path("llia", path, is_default=False)
    except TypeError:  # older ComfyUI without is_default
        folder_paths.add_model_folder_path("llia", path)
    exts = getattr(folder_paths, "supported_pt_extensions", {".safetensors"})
    entry = folder_paths.folder_names_and_paths.get("llia")
    if entry is not None and not entry[1]:
        folder_paths.folder_names_and_paths["llia"] = (entry[0], set(exts))


_register_model_folder()

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = None
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
