#!/usr/bin/env bash
# llama.cpp's llama-server for tests/test_engine_llamacpp.py: built from the llama.cpp tree vendored in
# the llama-cpp-python sdist (pinned below), only the llama-server target, into a cache outside the
# clone; skipped when the binary for this pin is already there. Prints the binary's path.
# No llama.cpp code enters the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

PIN="llama-cpp-python==0.3.36"
CACHE=${INFILL_LLAMA_SERVER_DIR:-$HOME/.cache/infill-ls-ci/llama-server}
PY=${PYTHON:-.venv/bin/python}
BIN="$CACHE/build/bin/llama-server"
JOBS=${INFILL_BUILD_JOBS:-2}

if [ "$(cat "$CACHE/.pin" 2>/dev/null)" = "$PIN" ] && [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

rm -rf "$CACHE" && mkdir -p "$CACHE/dl"
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$CACHE/dl" "$PIN" >&2
tar -xzf "$CACHE"/dl/llama_cpp_python-*.tar.gz -C "$CACHE"
SRC=$(echo "$CACHE"/llama_cpp_python-*/vendor/llama.cpp)
log="$CACHE/build.log"
{
  cmake -S "$SRC" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    && cmake --build "$CACHE/build" --target llama-server -j"$JOBS"
} >"$log" 2>&1 || { tail -n 50 "$log" >&2; exit 1; }
rm -rf "$CACHE/dl"
echo "$PIN" > "$CACHE/.pin"
echo "$BIN"
