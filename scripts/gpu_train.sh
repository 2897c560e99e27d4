#!/usr/bin/env bash
# Train demo recipes on a lent GPU, side by side, and bring each LLM back in one file (docs/DEMO_MODEL.md).
#
#   OUT=DIR scripts/gpu_train.sh RECIPE [RECIPE ...]
#
# Each RECIPE (a name in llmcxr_app/demo/train/recipes/ or a JSON path) runs as
#   python -m llmcxr_app.demo.train --recipe RECIPE --start-from START --out WORK/NAME --device DEVICE
# all at once (a tiny LLM leaves the GPU and the 16 cores mostly idle, so two runs cost about one), each cut at
# TRAIN_S seconds. The machine has no git, so the start is a folder of the checkout (START, default
# weights/demo: the start of the recipes that continue the shipped model; the demo recipe's own start,
# round 14, has to be carried in). Per recipe it writes OUT/NAME.log (the trainer's log, then "rc N wall S s")
# and OUT/NAME.tar.gz (NAME/llm and NAME/training.json: the device tool brings back at most 8 files of 16 MiB;
# the VQ-GAN and reader stay as they were, and come from the start). Exit status: 1 if any run failed.
#
# The trainer imports the app's packages (pydicom among them), which a bare GPU image lacks: run this after
# scripts/gpu_check.sh on the same warm machine (its install step adds them), or install gpu_wheels/app first.
#
# Environment: OUT (default ./gpu_out), START (weights/demo), DEVICE (cuda), TRAIN_S (400), WORK (/tmp/gpu_train),
# PYTHON (python3).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
OUT="${OUT:-./gpu_out}"
START="${START:-weights/demo}"
WORK="${WORK:-/tmp/gpu_train}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if (($# == 0)); then
    echo "usage: OUT=DIR scripts/gpu_train.sh RECIPE [RECIPE ...]" >&2
    exit 2
fi
mkdir -p "$OUT" "$WORK" || exit 2
if ! "$PY" -c "import llmcxr_app.demo.train.recipe" 2>"$OUT/import.log"; then
    echo "[gpu_train] the trainer does not import ($OUT/import.log): $(tail -1 "$OUT/import.log")" >&2
    echo "[gpu_train] install the app's wheels first (scripts/gpu_check.sh does: WHEELS=gpu_wheels/app)" >&2
    exit 2
fi

train() {  # RECIPE: one run, logged to OUT/NAME.log, packed into OUT/NAME.tar.gz
    local recipe=$1 name t0 rc
    name=$(basename "$recipe" .json)
    rm -rf "${WORK:?}/$name"
    t0=$(date +%s)
    timeout -k 10 "${TRAIN_S:-400}" "$PY" -m llmcxr_app.demo.train --recipe "$recipe" --start-from "$START" \
        --out "$WORK/$name" --device "${DEVICE:-cuda}" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "rc $rc wall $(($(date +%s) - t0)) s" >>"$OUT/$name.log"
    tar -C "$WORK" -czf "$OUT/$name.tar.gz" "$name/llm" "$name/training.json" || rc=1
    echo "[gpu_train] $name: rc $rc, $(tail -2 "$OUT/$name.log" | head -1)"
    return $rc
}

pids=()
for recipe in "$@"; do
    train "$recipe" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
exit $status
