#!/usr/bin/env bash
# The main job, from scratch: set up, train cnn3 with Gaussian noise σ = 0.25 on MNIST (one
# epoch on the first 30,000 training images), certify 100 MNIST test images (every 100th) with
# n = 10,000, α = 0.001, print the certified-accuracy table and write the plot.
# Rerunning resumes and reuses what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${SMOOTHCERT_VENV:-.venv}"
SC="$VENV/bin/smoothcert"
RUN=runs/demo-mnist-cnn3-g025
# fp32 pinned (train's default is auto, bf16 where the CPU has it), so that the numbers of
# docs/results/demo.md do not depend on bf16 support; they still vary a little between CPU
# instruction sets (the kernels sum in another order), as that page says.
"$SC" train --dataset mnist --arch cnn3 --method gaussian --sigma 0.25 --epochs 1 --subset 30000 \
  --batch-size 128 --optimizer sgd --lr 0.05 --seed 0 --precision fp32 --out "$RUN"
"$SC" certify "$RUN/best.safetensors" --dataset mnist --split test --sigma 0.25 \
  --n0 100 --n 10000 --alpha 0.001 --skip 100 --max 100 --seed 0 --out results/demo.db
"$SC" analyze results/demo.db --radii 0 0.25 0.5 0.75 1 --plot results/demo-curve.png
