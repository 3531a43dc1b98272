#!/usr/bin/env bash
# Set everything up from scratch, then run the linter, the test suite and the strict docs build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${SMOOTHCERT_VENV:-.venv}"
"$VENV/bin/ruff" check src tests benchmarks docs
# Data that setup fetched must be there: tests fail instead of skipping when it is not.
SMOOTHCERT_REQUIRE_DATA=1 "$VENV/bin/python" -m pytest -q --durations=15 "$@"
# The documentation site: a broken link, a missing page or an unresolved API reference fails.
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet
