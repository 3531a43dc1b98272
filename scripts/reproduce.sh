#!/usr/bin/env bash
# Run (or resume) the cpu-scale reproductions in the background, one thread per stage, and log
# to runs/EXPERIMENT.log. Rerun after an interruption: every stage continues where it stopped.
#   bash scripts/reproduce.sh cohen-cifar10 cohen-mnist
#   JOBS=2 bash scripts/reproduce.sh nal-mnist     # two independent stages side by side
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SMOOTHCERT_VENV:-.venv}"
JOBS="${JOBS:-1}"
mkdir -p runs
[ "$#" -gt 0 ] || set -- cohen-cifar10 cohen-mnist nal-mnist
for name in "$@"; do
  OMP_NUM_THREADS=1 nohup "$VENV/bin/python" -m smoothcert experiment run \
    "experiments/$name.toml" --scale cpu --jobs "$JOBS" >>"runs/$name.log" 2>&1 &
  echo "started $name (pid $!): tail -f runs/$name.log; smoothcert experiment status experiments/$name.toml"
done
