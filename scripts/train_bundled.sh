#!/usr/bin/env bash
# Reproduce the bundled model from nothing: the cartoon model (data -> base -> mouth paint -> distillation),
# then the real-people model on top of it (real videos + photos + cartoons -> mouth model -> base -> distillation).
# Training about 3 h 20 min on a 2-core CPU (cartoons: data 6, base 74, paint 12, distillation 14; real people:
# data 4, face tracks of 1,052 videos 17, mouth model 12 (+ 9 to decode the phones once) + its draw curve 5, head motion 3, base ~50, distillation ~12; the
# evaluations ~40 more). Every stage resumes where it stopped when rerun.
# Needs the real-face material in ../shared/realfaces (REAL=...). Usage: bash scripts/train_bundled.sh [WORKDIR]
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
# ---- the real-people model ("real" config: x0 = the reference warped to the mouth head's shape + a residual)
REAL=${REAL:-../shared/realfaces}
VAL_VIDEOS=hdtf_WDA_KatieHill_000,mimictalk_German_20s,styletalk_reagan_clip1  # people never trained on
VAL_PHOTOS=hallo_1,hallo_4,genface_000007,genface_015270,liveportrait_s3,liveportrait_s9,dreamtalk_male_face,sadtalker_people_0
# 5. data: 20 real talking videos -> aligned clips with landmark mouth targets; 73 photos -> still clips;
#    180 cartoon clips (60 identities) so cartoon portraits keep working
$PY -m llia_core.training.data --videos "$REAL/talking" --out "$W/real/talking" --val "$VAL_VIDEOS"
$PY -m llia_core.training.data --photos "$REAL/photos" --out "$W/real/photos" --val "$VAL_PHOTOS"
$PY -m llia_core.training.data --out "$W/real/cartoons" --identities 60 --clips 3 --split train --workers 1
# 6. the audio-to-mouth model (models/mouth_model.py): face tracks of every talking video and GRID clip
#    (landmarks, audio, word timings), each GRID sentence read again by 3 espeak-ng voices with the real
#    speaker's mouth mapped word by word; each video's sound/picture offset undone against a model of the
#    GRID speakers; the validation people never trained on (base and distillation never change it).
#    It hears the phones PocketSphinx decodes beside the log-mel (decoded once per track and cached
#    beside it, 3 min; the synthetic readings' 6 min more)
$PY -m llia_core.training.data --videos "$REAL/talking" --out "$W/real/tracks" --tracks-only
$PY -m llia_core.training.data --videos "$REAL/grid" --out "$W/real/tracks" --tracks-only
#    Last, how the face mesh reads a drawn opening is measured on the training photos, so the opening it
#    predicts (on the landmarks' scale) is drawn as wide as a real mouth of that reading.
$PY -m llia_core train --stage mouth --config real --init "$W/distill/model.safetensors" --data "$W/real/tracks" \
    --photos "$REAL/photos" --holdout "$VAL_VIDEOS,$VAL_PHOTOS" --steps 4000 --lr 2e-3 --synthetic-voices 3 \
    --threads 2 --out-dir "$W/real/mouth"
# 6b. the head-motion model (models/head_model.py): the head's pose and brows of every face track, learned
#    from their speech (a GRU driving a damped oscillator per axis), the validation people never trained on;
#    its noise calibrated so the drawn motion spreads like the training videos' (about 3 min on 2 cores)
$PY -m llia_core train --stage head --config real --init "$W/real/mouth/model.safetensors" --data "$W/real/tracks" \
    --holdout "$VAL_VIDEOS" --steps 1500 --lr 3e-3 --threads 2 --out-dir "$W/real/head"
# 7. base: trained with the true mouth shapes (the warp moves the portrait, the residual learns the rest);
#    the real clips listed three times so they are as many as the photo clips
D="$W/real/talking,$W/real/talking,$W/real/talking,$W/real/photos,$W/real/cartoons"
$PY -m llia_core train --stage base --config real --init "$W/real/head/model.safetensors" --data "$D" \
    --out-dir "$W/real/base" --steps 1500 --batch-frames 24 --lr 2e-4 --warmup 50 --fixed-fraction 0.1 \
    --mouth-weight 10 --mouth-aux-weight 0 --threads 2
# 8. latent consistency distillation into the 2-step student
$PY -m llia_core train --stage distill --init "$W/real/base/model.safetensors" --data "$D" --out-dir "$W/real/distill" \
    --steps 300 --batch-frames 16 --lr 1e-4 --warmup 20 --mouth-aux-weight 0 --threads 2
# 9. evaluation on the validation people (the figure shows real people: it stays in $W, out of the repository)
$PY -m llia_core eval --real "$REAL" --model "$W/real/distill/model.safetensors" --val-videos "$VAL_VIDEOS" \
    --val-photos "$VAL_PHOTOS" --threads 2 --out "$W/real/eval/report" --figure "$W/real/eval/figure.jpg"
$PY -m llia_core eval --model "$W/real/distill/model.safetensors" --identities 3 --seconds 2.0 --threads 2 \
    --out "$W/real/eval/cartoons"
echo "model: $W/real/distill/model.safetensors (copy to llia_core/assets/llia-demo.safetensors to bundle it)"
