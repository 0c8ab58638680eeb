"""Load the pack the way ComfyUI does and run UI-format workflows through the node classes.

Core nodes used by our workflows get small stand-ins here (ComfyUI is not installed in CI).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-LLIA"


def load_pack():
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


class FakeLoadImage:
    def __init__(self, input_dir):
        self.input_dir = Path(input_dir)

    def run(self, image, **_):
        from PIL import Image

        rgb = np.asarray(Image.open(self.input_dir / image).convert("RGB"), dtype=np.float32) / 255
        return (torch.from_numpy(rgb)[None], torch.zeros(1, rgb.shape[0], rgb.shape[1]))


class FakeLoadAudio:
    def __init__(self, input_dir):
        self.input_dir = Path(input_dir)

    def run(self, audio, **_):
        import soundfile as sf

        data, sr = sf.read(self.input_dir / audio, dtype="float32", always_2d=True)
        return ({"waveform": torch.from_numpy(data.T)[None], "sample_rate": sr},)


class FakeCreateVideo:
    def run(self, images, fps, audio=None):
        return ({"images": images, "fps": fps, "audio": audio},)


class FakeSaveVideo:
    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)
        self.saved = []

    def run(self, video, filename_prefix, format="auto", codec="auto"):
        from llia_core.video_io import write_mp4

        path = self.out_dir / (filename_prefix.replace("/", "_") + f"_{len(self.saved):03d}.mp4")
        a = video["audio"]
        write_mp4(path, video["images"], video["fps"], audio=a["waveform"][0].mean(0), sample_rate=a["sample_rate"])
        self.saved.append(path)
        return ()


class FakePreview:
    def __init__(self):
        self.seen = []

    def run(self, **kwargs):
        self.seen.append(kwargs)
        return ()


def widget_names(cls) -> list[str]:
    """Names of widget inputs in the order the UI serialises them (seeds add a control value)."""
    spec = cls.INPUT_TYPES()
    names = []
    for group in ("required", "optional"):
        for name, value in spec.get(group, {}).items():
            typ = value[0]
            if isinstance(typ, list) or typ in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                names.append(name)
                if name == "seed":
                    names.append(None)  # control_after_generate
    return names


CORE_WIDGETS = {"LoadImage": ["image", None], "LoadAudio": ["audio", None, None], "CreateVideo": ["fps"],
                "SaveVideo": ["filename_prefix", "format", "codec"], "PreviewAny": [], "PreviewImage": []}


def to_api(workflow: dict, mappings: dict) -> dict:
    """UI workflow -> API prompt {id: {class_type, inputs}}."""
    links = {l[0]: l for l in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        t = node["type"]
        names = CORE_WIDGETS[t] if t in CORE_WIDGETS else widget_names(mappings[t])
        inputs = {}
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        for name, value in zip(names, node.get("widgets_values", [])):
            if name is not None and name not in linked:
                inputs[name] = value
        for i in node.get("inputs", []):
            if i.get("link") is not None:
                _, src, slot, _, _, _ = links[i["link"]]
                inputs[i["name"]] = [str(src), slot]
        prompt[str(node["id"])] = {"class_type": t, "inputs": inputs}
    return prompt


def execute(prompt: dict, mappings: dict, core: dict) -> dict:
    """Run an API prompt in dependency order; returns {node id: outputs tuple}."""
    results: dict[str, tuple] = {}
    pending = dict(prompt)
    while pending:
        progressed = False
        for nid, node in list(pending.items()):
            deps = [v[0] for v in node["inputs"].values() if isinstance(v, list)]
            if all(d in results for d in deps):
                kwargs = {k: (results[v[0]][v[1]] if isinstance(v, list) else v) for k, v in node["inputs"].items()}
                t = node["class_type"]
                if t in core:
                    out = core[t].run(**kwargs)
                else:
                    obj = mappings[t]()
                    out = getattr(obj, obj.FUNCTION)(**kwargs)
                    if isinstance(out, dict):
                        out = out["result"]
                results[nid] = out
                del pending[nid]
                progressed = True
        assert progressed, "the workflow graph has a cycle or a missing input"
    return results


def load_workflow(name: str) -> dict:
    return json.loads((ROOT / "workflows" / name).read_text())
