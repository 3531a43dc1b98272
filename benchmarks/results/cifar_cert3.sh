#!/usr/bin/env bash
# Extend the CIFAR-10 adaptive-vs-fixed comparison past the first 26 images (same model, seeds).
source /work/venv/bin/activate
cd /work/main
for k in 0 1; do
  OMP_NUM_THREADS=1 nohup python benchmarks/adaptive_vs_fixed.py --dataset cifar10 \
    --checkpoint /work/artifacts/cifar10-resnet20-g025-sub20k/best.safetensors \
    --precision bf16 --batch-size 256 --images 200 --start 26 --shard $k/2 \
    --fixed-out benchmarks/results/fixed_cifar10_resnet20.jsonl \
    --adaptive-out benchmarks/results/adaptive_cifar10_resnet20.jsonl \
    > /work/logs/cifar_cert3_$k.log 2>&1 &
done
