#!/usr/bin/env bash
# One lent GPU session's checks, in two calls on the same warm machine (15 minutes of device time in
# all, start-up included). Every step has its own time limit, so one that hangs costs only its share;
# the JSON of each step and one log go to $OUT (at most 8 files come back from the device).
#
#   bash benchmarks/gpu_session.sh 1   # carry .whl: 13B bench_generate (the original vs the app's
#                                      # engine, fidelity included), then random 7B written in the released
#                                      # formats, weights check, the terminal chat's load (peak memory)
#   bash benchmarks/gpu_session.sh 2   # carry .whl-app (same machine, within its 30 s warm window):
#                                      # the app itself on the 7B set, 16 streaming /v1 clients; then
#                                      # 7B bench_generate
#
# DEVICE=cpu LOAD_SIZE=tiny BENCH_SIZE=tiny rehearses both on a CPU (tests/test_benchmark.py does).
set -uo pipefail
cd "$(dirname "$0")/.."
phase="${1:?usage: gpu_session.sh 1|2}"
out="${OUT:-gpu_results}"
device="${DEVICE:-cuda}"
load_size="${LOAD_SIZE:-7b}"
bench_size="${BENCH_SIZE:-13b}"
models="${MODELS:-/tmp/gpu_models}"
python="${PYTHON:-python3}"
mkdir -p "$out" "$models"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # benchmarks/ import the package without installing it
exec > >(tee -a "$out/session_$phase.log") 2>&1

# step SECONDS NAME COMMAND...: run with a limit, say how it ended
step() {
  local limit=$1 name=$2 start=$SECONDS code
  shift 2
  echo "=== $name (limit ${limit} s): $*"
  timeout -k 15 "$limit" "$@"
  code=$?
  echo "=== $name: exit $code after $(( SECONDS - start )) s"
  return 0
}

install() {  # wheels carried in $1 into /tmp/site, which stays while the machine stays warm
  if [[ -d "$1" ]]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$1"/*.whl || exit 3
    if [[ -d "$1/tokenizer_only" ]]; then cp -r "$1/tokenizer_only/wordllama" /tmp/site/; fi
  fi
  if [[ -d /tmp/site ]]; then export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"; fi
}

# the model set in the layout `--checkpoints $models --model $load_size` reads
if [[ "$load_size" == tiny ]]; then
  write_model_set=("$python" -m pandagpt_demo.weights make-tiny "$models/tiny")
else
  write_model_set=("$python" -m pandagpt_demo.weights make-random --size "$load_size" "$models" --device "$device")
fi
# bench_generate, the original measured for one session (it serves one at a time)
bench=("$python" benchmarks/bench_generate.py --device "$device" --original-sessions 1)

case "$phase" in
  1)
    [[ "$device" == cuda ]] && install .whl
    if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi
    "$python" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'
    # First, what the targets are about. On 2026-12-04 the 13B compiling warm-up outran 200 s: room for it.
    step 380 "bench $bench_size" "${bench[@]}" --size "$bench_size" --json "$out/bench_$bench_size.json" ${BENCH_FLAGS:---new-tokens 128}
    step 80 make-random "${write_model_set[@]}"  # 45 s at 7B on 2026-12-04
    step 30 check "$python" -m pandagpt_demo.weights check --dir "$models" --model "$load_size"
    # the app's load path; compiling is measured by the bench and the app, not here
    step 70 chat "$python" benchmarks/peak_memory.py --json "$out/load_$load_size.json" -- \
      "$python" -m pandagpt_demo.chat --checkpoints "$models" --model "$load_size" --device "$device" --no-compile \
      --image examples/sunset.jpg --max-new-tokens 32 --temperature 0 "Describe this image." </dev/null
    ;;
  2)
    [[ "$device" == cuda ]] && { install .whl-app; "$python" -c 'import transformers' || { echo "not the warm machine of call 1"; exit 4; }; }
    step 300 app "$python" benchmarks/bench_app.py --clients "${CLIENTS:-16}" --json "$out/app_$load_size.json" ${APP_FLAGS:-} -- \
      --checkpoints "$models" --model "$load_size" --device "$device" --no-mcp
    step 240 "bench $load_size" "${bench[@]}" --size "$load_size" --json "$out/bench_$load_size.json" ${BENCH_FLAGS:-}
    ;;
  *)
    echo "unknown phase $phase: 1 or 2" >&2
    exit 2
    ;;
esac
