#!/usr/bin/env bash
# Wheels for a lent GPU machine (Python 3.12, no network): the parts of requirements.txt its image lacks.
#
#   bash benchmarks/gpu_wheels.sh [DIR]        # default DIR: .whl, 55 MB (ignored by git; carry it to the device)
#   bash benchmarks/gpu_wheels.sh --bnb [DIR]  # default DIR: .whl-bnb: bitsandbytes alone (42 MB), for a later
#                                              # call on the same warm machine (see gpu_check.sh)
#   bash benchmarks/gpu_wheels.sh --app [DIR]  # default DIR: .whl-app: Gradio and what it needs that the image
#                                              # lacks (37 MB), for `app.py` in a later call on the same machine
#
# The machine already has torch, torchvision, torchaudio, timm, einops, tokenizers, sentencepiece,
# huggingface_hub, accelerate and protobuf. Of wordllama only its LLaMA tokenizer file travels (the
# wheel is 19 MB): synthetic.llama_tokenizer locates the package folder without importing it.
# Everything must stay under the device's 64 MiB carry limit, with the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

set_name=base
if [[ "${1:-}" == --bnb || "${1:-}" == --app ]]; then set_name="${1#--}"; shift; fi
dest="${1:-$([[ $set_name == base ]] && echo .whl || echo ".whl-$set_name")}"
mkdir -p "$dest"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
fetch() { python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d "$dest" "$@"; }
pin() { sed -n "s/^\($1==[^ ;]*\).*/\1/p" requirements.txt; }  # the version requirements.txt pins

if [[ $set_name == bnb ]]; then
  fetch "$(pin bitsandbytes)"
elif [[ $set_name == app ]]; then
  # Resolved with their dependencies, then only those the image lacks are kept (the rest it has).
  resolved=$(mktemp -d)
  python -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d "$resolved" \
    "gradio==$(sed -n 's/^gradio\[mcp\]==\([^ ;]*\).*/\1/p' requirements.txt)" "$(pin gradio_client)" "$(pin huggingface_hub)"
  lacking="annotated_types brotli fastapi gradio gradio_client groovy hf_gradio opentelemetry_api orjson pydantic pydantic_core pydub python_multipart
           pytz safehttpx semantic_version starlette tomlkit typing_inspection tzdata uvicorn"
  for name in $lacking; do cp "$resolved/$name"-[0-9]*.whl "$dest/"; done
  rm -rf "$resolved"
else
  fetch "$(pin transformers)" "$(pin peft)" "$(pin imagebind-unofficial)" "$(pin av)" "$(pin soundfile)" "$(pin huggingface_hub)" \
        cffi pycparser ftfy wcwidth "setuptools<81" httpx2 httpcore2 truststore "click>=8.4.2"
  # sdist-only on PyPI: built here as pure-Python wheels
  python -m pip wheel -q --no-deps -w "$dest" pytorchvideo==0.1.5 iopath==0.1.10
  wordllama=$(mktemp -d)
  fetch -d "$wordllama" "$(pin wordllama)"
  python -m zipfile -e "$wordllama"/wordllama-*.whl "$wordllama/unpacked"
  mkdir -p "$dest/tokenizer_only/wordllama/tokenizers"
  : > "$dest/tokenizer_only/wordllama/__init__.py"
  cp "$wordllama/unpacked/wordllama/tokenizers/l2_supercat_tokenizer_config.json" "$dest/tokenizer_only/wordllama/tokenizers/"
  rm -rf "$wordllama"
fi
du -sh "$dest"
