#!/usr/bin/env bash
# Fills .device/ (git-ignored) with what benchmarks/gpu_run.sh needs on the GPU machine and nothing else:
#   .device/fashion-mnist/  the four gzipped IDX files of Fashion-MNIST
#   .device/yardstick/      the yardstick of issue 14 (fitness_yardstick.py)
#   .device/wheels/         the Python packages afos imports that the GPU image lacks (its list:
#                           /work/.library/device/KINDS.md): deap and what deap imports (moocore, cffi,
#                           pycparser, platformdirs), tomli-w. jax, flax, optax, sympy, numpy, scipy, rich,
#                           scikit-learn are there; tensorflow-datasets is imported only for tfds datasets.
# Usage: benchmarks/gpu_prepare.sh [FASHION_MNIST_DIR] [YARDSTICK_DIR]   (run from the repository root)
# Then name .device in the device call's carry (limit 64 MiB for the whole tree; this is about 32 MiB).
set -euo pipefail
fashion=${1:-/usr/share/datasets/fashion-mnist}
yardstick=${2:-../shared/yardstick}
mkdir -p .device/fashion-mnist .device/yardstick .device/wheels
cp "$fashion"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz .device/fashion-mnist/
cp "$yardstick"/fitness_yardstick.py .device/yardstick/
# Python 3.12 on x86-64 there (KINDS.md); one version of each package, no dependencies pulled.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 --platform any -d .device/wheels \
    deap==1.4.4 moocore==0.3.2 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.9 tomli-w==1.2.0
du -sh .device .device/*
