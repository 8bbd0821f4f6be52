#!/usr/bin/env bash
# The GPU checks, run on a lent GPU machine (or any CUDA box); logs and JSON go to $OUT (default gpu_results/).
#
#   bash benchmarks/gpu_check.sh model 7b            # random weights at 7B in the released formats, written on the
#                                                    # GPU, then the terminal chat answers an image question (timed)
#   bash benchmarks/gpu_check.sh bench 13b [FLAGS]   # benchmarks/bench_generate.py --size 13b FLAGS
#   bash benchmarks/gpu_check.sh kv 13b [FLAGS]      # benchmarks/bench_kv_cache.py --size 13b FLAGS (e.g. --compile)
#   bash benchmarks/gpu_check.sh load 7b [FLAGS]     # benchmarks/bench_load.py: peak host memory of the load, before and
#                                                    # after issue 23, on the set the model check writes (written if missing)
#
# With INSTALL_WHEELS=1, the wheels in .whl and .whl-bnb (made by benchmarks/gpu_wheels.sh, carried
# along) are installed into /tmp/site first; /tmp/site stays while the machine stays warm, so a later
# call can carry .whl-bnb alone (both together exceed the carry limit). DEVICE=cpu with size tiny
# rehearses the script without a GPU (tests/test_benchmark.py does).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:?usage: gpu_check.sh model|bench|kv|load SIZE [flags]}"
size="${2:?usage: gpu_check.sh model|bench|kv|load SIZE [flags]}"
shift 2
out="${OUT:-gpu_results}"
device="${DEVICE:-cuda}"
python="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [[ "${INSTALL_WHEELS:-0}" == 1 ]]; then
  for wheels in .whl .whl-bnb; do
    if [[ -d "$wheels" ]]; then
      "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl
    fi
  done
  if [[ -d .whl/tokenizer_only ]]; then cp -r .whl/tokenizer_only/wordllama /tmp/site/; fi
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

elapsed() { local start=$SECONDS; "$@"; echo "[$(( SECONDS - start )) s] $*"; }

case "$what" in
  model)
    folder="${TMPDIR:-/tmp}/random_$size"
    {
      if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi
      "$python" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'
      if [[ "$size" == tiny ]]; then
        elapsed "$python" -m pandagpt_demo.weights make-tiny "$folder/tiny"  # the layout --model tiny reads
      else
        elapsed "$python" -m pandagpt_demo.weights make-random --size "$size" "$folder" --device "$device"
      fi
      elapsed "$python" -m pandagpt_demo.weights check --dir "$folder" --model "$size"
      elapsed "$python" -m pandagpt_demo.chat --checkpoints "$folder" --model "$size" --device "$device" \
        --image examples/sunset.jpg --max-new-tokens 32 --temperature 0 "Describe this image." </dev/null
    } 2>&1 | tee "$out/model_$size.log"
    ;;
  bench)
    "$python" benchmarks/bench_generate.py --size "$size" --device "$device" --json "$out/bench_$size${BENCH_TAG:-}.json" "$@" 2>&1 \
      | tee "$out/bench_$size${BENCH_TAG:-}.log"
    ;;
  kv)
    "$python" benchmarks/bench_kv_cache.py --size "$size" --device "$device" --json "$out/kv_$size${BENCH_TAG:-}.json" "$@" 2>&1 \
      | tee "$out/kv_$size${BENCH_TAG:-}.log"
    ;;
  load)
    "$python" benchmarks/bench_load.py --size "$size" --dir "${TMPDIR:-/tmp}/random_$size" --device "$device" \
      --json "$out/load_$size${BENCH_TAG:-}.json" "$@" 2>&1 | tee "$out/load_$size${BENCH_TAG:-}.log"
    ;;
  *)
    echo "unknown check $what: use model, bench, kv or load" >&2
    exit 2
    ;;
esac
