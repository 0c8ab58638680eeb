#!/usr/bin/env bash
# Reproduce the bundled model from nothing: data -> base model -> consistency distillation -> eval.
# About 1 h 46 min on a 2-core CPU (data 6, base 74, mouth paint 12, distillation 14; evaluation ~33 more).
# Every stage resumes where it stopped when rerun. Usage: bash scripts/train_bundled.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
W=${1:-runs/bundled}
PY=".venv/bin/python"
export OMP_WAIT_POLICY=PASSIVE  # threads sleep instead of spinning when another process shares the cores
# 1. 1,080 training clips: 270 training identities x 4 clips x 3 s (test/val identities are never generated)
$PY -m llia_core.training.data --out "$W/data" --identities 300 --clips 4 --split train --workers 2
# 2. base model (the demo config: mouth head + mouth map): fixed 8-frame clips for the first quarter,
#    then 1-16 frames; x0 prediction with reference skip; the mouth region weighted 11x; the audio
#    encoder's mouth head learns the true mouth parameters (auxiliary loss 0.5) and the mouth map
#    draws its prediction into the latents
$PY -m llia_core train --stage base --data "$W/data" --out-dir "$W/base" --steps 2700 \
    --batch-frames 24 --lr 4e-4 --mouth-weight 10 --mouth-aux-weight 0.5 --threads 2
# 2b. the mouth paint trained alone on top of the frozen base model: it repaints the lips cells of
#    the predicted frame pixel by pixel from the mouth head's shape (models/mouth_map.py; the
#    demo-paint-full config: no learned gate), with a loss on its own proposal as well
$PY -m llia_core train --stage base --config demo-paint-full --init "$W/base/model.safetensors" --data "$W/data" \
    --out-dir "$W/paint" --train-only mouth_paint --steps 1000 --batch-frames 24 --lr 2e-3 --warmup 20 \
    --fixed-fraction 0 --ema-decay 0.99 --mouth-weight 10 --mouth-aux-weight 0.5 --paint-aux-weight 1.0 --threads 2
# 3. latent consistency distillation into the few-step student (audio guidance 1.5 distilled in)
$PY -m llia_core train --stage distill --init "$W/paint/model.safetensors" --data "$W/data" --out-dir "$W/distill" \
    --steps 300 --batch-frames 16 --lr 1e-4 --warmup 20 --paint-aux-weight 1.0 --threads 2
# 4. evaluation on held-out identities (teacher rows use the base model with its paint)
$PY -m llia_core eval --model "$W/distill/model.safetensors" --teacher "$W/paint/model.safetensors" \
    --identities 3 --seconds 2.0 --drift-minutes 10 --threads 2 --out "$W/eval/report"
echo "model: $W/distill/model.safetensors (copy to llia_core/assets/llia-demo.safetensors to bundle it)"
