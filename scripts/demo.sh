#!/usr/bin/env bash
# The main job on a fresh clone: set up, then portrait + speech -> avatar.mp4 with the bundled model.
# Extra arguments go to `python -m llia_core generate` (e.g. --portrait me.jpg --audio hello.wav).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m llia_core generate --out "${LLIA_OUT:-avatar.mp4}" "$@"
