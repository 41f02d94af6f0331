#!/usr/bin/env bash
# One-time, idempotent set-up for building and testing Osteon on a fresh Debian machine.
#  - Debian packages: cmake and g++ (charls/openjpeg codecs), dcmtk (storescu, storescp, echoscu,
#    dcmdump), dicom3tools (dciodvfy).
#  - PyTorch 2.11.0 from the Python package index into a version-keyed cache folder outside the
#    repository (reused when present); libtorch is taken from its `torch/` folder (tch =0.24.0).
#  - A Python virtual environment with pydicom + numpy, the independent reader used by the tests.
# Source this file (`. scripts/setup.sh`) to get LIBTORCH and OSTEON_PY exported; the set-up then
# runs as a child process, so the calling shell's options (no `set -e`) are left as they were.

OSTEON_TORCH_VERSION=2.11.0
OSTEON_CACHE="${OSTEON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/osteon}"
TORCH_DIR="$OSTEON_CACHE/torch-$OSTEON_TORCH_VERSION"
PY_DIR="$OSTEON_CACHE/pyenv-validators-1"

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  OSTEON_CACHE="$OSTEON_CACHE" bash "${BASH_SOURCE[0]}" || return 1
  export LIBTORCH="$TORCH_DIR/torch"
  export OSTEON_PY="$PY_DIR/bin/python"
  return 0
fi
set -euo pipefail

if ! command -v cargo >/dev/null; then
  echo "setup: no Rust toolchain (cargo) on PATH: install Rust >= 1.85 with rustup (https://rustup.rs)" >&2
  exit 1
fi

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
command -v storescp >/dev/null || need_apt+=(dcmtk)
command -v dciodvfy >/dev/null || need_apt+=(dicom3tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -f "$TORCH_DIR/.complete" ]; then
  echo "setup: installing PyTorch $OSTEON_TORCH_VERSION (libtorch for tch) into $TORCH_DIR (several GB, once)" >&2
  rm -rf "$TORCH_DIR.partial"
  python3 -m pip install -q --disable-pip-version-check --no-cache-dir \
    --target "$TORCH_DIR.partial" "torch==$OSTEON_TORCH_VERSION"
  rm -rf "$TORCH_DIR"
  mv "$TORCH_DIR.partial" "$TORCH_DIR"
  touch "$TORCH_DIR/.complete"
fi

if [ ! -f "$PY_DIR/.complete" ]; then
  echo "setup: creating validator Python environment in $PY_DIR" >&2
  rm -rf "$PY_DIR"
  python3 -m venv "$PY_DIR"
  "$PY_DIR/bin/pip" install -q --disable-pip-version-check "pydicom==3.0.2" "numpy<3"
  touch "$PY_DIR/.complete"
fi

export LIBTORCH="$TORCH_DIR/torch"
export OSTEON_PY="$PY_DIR/bin/python"
