#!/usr/bin/env bash
# GPU acceptance in one command, for a bare CUDA machine without network (issue 21; docs/BENCHMARKS.md).
#
#   WHEELS=DIR OUT=DIR scripts/gpu_check.sh
#
# Installs what the image lacks from WHEELS (made by scripts/gpu_wheels.sh; pip --no-index, the machine's own
# CUDA torch stays), then runs, each step under `timeout`, in this order: install, env (GPU, driver, versions),
# pytest_gpu (pytest -m gpu), app (the app on the demo weights answering one describe and one draw through
# gradio_client), bench_nf4 and bench_bf16 (python -m llmcxr_app.bench --shape official, the eager HF generate
# baseline and the app's fast path in the same run; the log gets each path's figures as soon as it ends, and
# each cache bucket's compile time), nvidia_smi (memory in use at the end).
# Without CUDA the CUDA steps are skipped, each with a line saying so.
#
# Writes OUT/steps/NAME.{log,json,detail.json} (and pytest's JUnit XML) and OUT/summary.json, rewritten after
# every step: each step's status (ok, failed, timeout, skipped), seconds and figures, the bench targets, one
# verdict: passed, incomplete (nothing failed, some steps skipped) or failed. Exit status 1 when failed, else 0.
#
# Environment (seconds are wall-clock budgets, together under 10 minutes; a step cut by its budget is recorded
# as a timeout and the next ones still run):
#   OUT (default ./gpu_out)  WHEELS (folder of wheels; needed only when something is missing)
#   PYTHON (default python3) TOTAL_S (540: no step starts past it, each is cut to what is left; about 15 s
#   of bookkeeping come on top)
#   B_INSTALL 30  B_ENV 15  B_PYTEST 75  B_APP 75  B_BENCH_NF4 300  B_BENCH_BF16 150  B_SMI 10
#   (measured on an H200: the fast path compiles about 40 s per cache bucket at the official shape, 4 buckets)
#   SKIP: space-separated step names to skip, recorded as skipped (default "bench_bf16": its compile needs
#   minutes of its own; SKIP="" runs every step)
#   NF4_REPEATS (2; the targets' run)  BF16_REPEATS (1)  BF16_TOKENS (128; bf16 has no target, it compares)
#   PACK=1: at the end, pack OUT/steps into OUT/steps.tar.gz (fewer files to carry back)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
OUT="${OUT:-./gpu_out}"
WHEELS="${WHEELS:-}"
PY="${PYTHON:-python3}"
TOTAL_S="${TOTAL_S:-540}"
SKIP="${SKIP-bench_bf16}"
steps="$OUT/steps"
mkdir -p "$steps" || exit 2
rm -f "$steps"/*.json "$OUT/summary.json"
# Offline machine: no step may wait on a network call (Hub lookups, Gradio's analytics).
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
start=$(date +%s)
lib() { "$PY" scripts/gpu_check_steps.py "$@"; }

record() {  # NAME STATUS SECONDS RC NOTE
    lib record --out "$OUT" --name "$1" --status "$2" --seconds "$3" ${4:+--rc "$4"} --note "$5"
}

skip() {  # NAME REASON
    echo "[gpu_check] $1: skipped: $2"
    record "$1" skipped 0 "" "$2"
}

step() {  # NAME BUDGET COMMAND...: run under timeout, log to steps/NAME.log, record the outcome
    local name=$1 budget=$2 left t0 rc status ms secs
    shift 2
    if [[ " $SKIP " == *" $name "* ]]; then
        skip "$name" "SKIP names it"
        return
    fi
    left=$((TOTAL_S - ($(date +%s) - start)))
    if ((left < 5)); then
        skip "$name" "the total budget (TOTAL_S=${TOTAL_S} s) is spent"
        return
    fi
    ((budget > left)) && budget=$left
    echo "[gpu_check] $name (up to ${budget} s) ..."
    t0=$(date +%s%N)
    timeout -k 10 "$budget" "$@" >"$steps/$name.log" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    secs="$((ms / 1000)).$(printf %03d $((ms % 1000)))"
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status=failed ;;
    esac
    echo "[gpu_check] $name: $status in ${secs%.*} s (exit $rc)"
    record "$name" "$status" "$secs" "$rc" "$([[ $status == timeout ]] && echo "cut at ${budget} s")"
}

step install "${B_INSTALL:-30}" "$PY" scripts/gpu_check_steps.py install --wheels "$WHEELS" \
    --detail "$steps/install.detail.json"
step env "${B_ENV:-15}" "$PY" scripts/gpu_check_steps.py env --detail "$steps/env.detail.json"

if [[ "$("$PY" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null)" == True ]]; then
    step pytest_gpu "${B_PYTEST:-75}" "$PY" scripts/gpu_check_steps.py pytest --xml "$steps/pytest_gpu.xml" \
        --detail "$steps/pytest_gpu.detail.json"
    step app "${B_APP:-75}" "$PY" scripts/gpu_app_check.py --device cuda --start-limit 65 \
        --json "$steps/app.detail.json"
    bench=("$PY" -m llmcxr_app.bench --shape official --device cuda --paths hf,fast)
    step bench_nf4 "${B_BENCH_NF4:-300}" "${bench[@]}" --quantization nf4 --repeats "${NF4_REPEATS:-2}" \
        --json "$steps/bench_nf4.detail.json"
    step bench_bf16 "${B_BENCH_BF16:-150}" "${bench[@]}" --quantization bf16 --repeats "${BF16_REPEATS:-1}" \
        --new-tokens "${BF16_TOKENS:-128}" --json "$steps/bench_bf16.detail.json"
else
    why="CUDA is not available to $PY (torch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null))"
    echo "[gpu_check] no CUDA: the GPU steps are skipped: $why"
    for name in pytest_gpu bench_nf4 bench_bf16 app; do skip "$name" "$why"; done
fi

if command -v nvidia-smi >/dev/null; then
    step nvidia_smi "${B_SMI:-10}" "$PY" scripts/gpu_check_steps.py smi --detail "$steps/nvidia_smi.detail.json"
else
    skip nvidia_smi "nvidia-smi is not on PATH"
fi

echo "[gpu_check] summary ($OUT/summary.json), $(($(date +%s) - start)) s in all:"
lib summary --out "$OUT"
rc=$?
if [[ "${PACK:-0}" == 1 ]]; then
    tar -C "$OUT" -czf "$OUT/steps.tar.gz" steps && rm -rf "$steps"
fi
exit $rc
