#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU and JAX's CUDA build, run the test suite, the
# seed run, `nnrs-jax train`, the sharded path on the GPU(s) and the benchmark tables, and print
# the card and the figures. Every step runs even if an earlier one fails; the summary at the end
# says which failed, and the exit status is 1 if any did. Logs go to OUT_DIR (default
# gpu_check/); copy the printed figures into benchmarks/RESULTS.md.
#
# Setup, from the project root (MNIST in $NNRS_JAX_DATA, or let it download):
#   python -m venv .venv && .venv/bin/pip install -e ".[dev,bench]" "jax[cuda12]"
#   benchmarks/gpu_check.sh [OUT_DIR]
# PYTHON=/path/to/python overrides the interpreter (default .venv/bin/python).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${1:-gpu_check}
export NNRS_JAX_DATA=${NNRS_JAX_DATA:-../shared/data}

die() {
    echo "gpu_check: $*" >&2
    exit 2
}

# Fail clearly, before anything long, where there is no GPU to check.
command -v nvidia-smi >/dev/null 2>&1 ||
    die "nvidia-smi not found: this check needs a machine with an NVIDIA GPU and its driver"
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader) ||
    die "nvidia-smi found no GPU"
[ -x "$PYTHON" ] || die "no Python at $PYTHON (set PYTHON=...)"
"$PYTHON" - <<'EOF' || die "JAX sees no GPU: install JAX's CUDA build, pip install 'jax[cuda12]'"
import sys

import jax
import jaxlib

gpus = [d for d in jax.devices() if d.platform == "gpu"]
if not gpus:
    sys.exit(f"JAX's devices: {jax.devices()}")
print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}: {len(gpus)} GPU(s), "
      f"{', '.join(sorted({d.device_kind for d in gpus}))}")
EOF
mkdir -p "$OUT"
echo "card: $CARD"
echo "logs: $OUT/"

FAILED=()
step() { # step NAME COMMAND...: run, log to $OUT/NAME.log, time it, remember a failure
    local name=$1
    shift
    echo
    echo "== $name: $*"
    local start=$SECONDS
    if "$@" 2>&1 | tee "$OUT/$name.log"; then
        echo "-- $name passed in $((SECONDS - start)) s"
    else
        echo "-- $name FAILED after $((SECONDS - start)) s (see $OUT/$name.log)"
        FAILED+=("$name")
    fi
}

# 1. The test suite with the GPU as JAX's default device, 8 workers sharing it (no
#    preallocation), the long MNIST runs, notebooks and multi-process tests left to CI: a lent
#    GPU machine is often lent for minutes. The suite multiplies at full float32 precision
#    (tests/conftest.py), not in the GPU's default TF32.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
step tests timeout 300 "$PYTHON" -m pytest -q -n 8 -m "not slow" -p no:cacheprovider \
    --ignore tests/test_notebooks.py --ignore tests/test_parallel.py --ignore tests/test_meshes.py \
    --ignore tests/test_determinism.py --ignore tests/test_ranking_protocol.py --ignore tests/test_ranking_command.py
step tests-float32 timeout 200 "$PYTHON" -m pytest -q -n 8 --float32 -m "not slow" \
    -p no:cacheprovider

# 2. The seed run: 151 full-batch steps of the 784-64-32-16-10 network on 60 000 images.
#    Target: under 1 s of training (the line "training time", compilation included, and the
#    benchmark's steady step × 151 below, compilation excluded).
step seed-run "$PYTHON" -m nnrs_jax train --arch 784-64-32-16-10 --activation elu --init he \
    --regularizer elastic_net:1e-4,1e-4 --loss cross_entropy --optimizer nadam --lr 5e-4 \
    --steps 151 --no-progress

# 3. The default recipe, as a new user runs it.
step train "$PYTHON" -m nnrs_jax train --no-progress

# 4. The sharded path on the GPU(s): fit with a mesh against one device (time and max param
#    difference), and evaluate with a mesh.
step sharded timeout 300 "$PYTHON" benchmarks/bench_parallel.py --platform gpu
step sharded-evaluate "$PYTHON" - <<'EOF'
import jax

import nnrs_jax as nj

x, y = nj.datasets.mnist("test")
model = nj.serial(nj.dense(784, 64), nj.relu(), nj.dense(64, 10))
mesh = nj.parallel.data_mesh()
result = nj.fit(model, nj.cross_entropy, nj.adam(1e-3), x, y, key=jax.random.key(0),
                epochs=2, batch_size=128 * mesh.devices.size, mesh=mesh, progress=False)
one, many = (nj.evaluate(model, result.params, x, y, mesh=m) for m in (None, mesh))
print(f"{mesh.devices.size} GPU(s): accuracy {many.accuracy:.4f} with the mesh, "
      f"{one.accuracy:.4f} without; loss difference {abs(one.loss - many.loss):.1e}")
# The same params: only the order of the sums differs (and TF32 products, JAX's GPU default).
assert abs(one.loss - many.loss) <= 1e-4 * one.loss, "the mesh changed the loss"
assert abs(one.accuracy - many.accuracy) <= 2 / len(y), "the mesh changed the predictions"
EOF

# 5. The fast recipe (target on a 2-core CPU: 99 % in 10 s), as a new user runs it.
step fast "$PYTHON" -m nnrs_jax train --model fast --no-progress

# 6. The benchmark tables: nnrs_jax against PyTorch and Flax (with the bench extra installed;
#    PyTorch on the GPU when its CUDA build is there), the CNN epoch, the fast recipe against
#    its PyTorch twin, conv2d's policies on the card against XLA's own convolution (the
#    measured choice must never be slower), and vmap (8 models against one).
step bench "$PYTHON" benchmarks/bench.py --repeats 3 --json "$OUT/bench.json"
step bench-cnn "$PYTHON" benchmarks/bench_cnn.py --examples 12800
step bench-fast "$PYTHON" benchmarks/bench_fast.py
step bench-autotune "$PYTHON" benchmarks/bench_autotune.py
step bench-vmap "$PYTHON" benchmarks/bench_vmap.py

echo
echo "card: $CARD"
grep -h "training time" "$OUT/seed-run.log" 2>/dev/null | sed 's/^/seed run: /'
grep -h "test accuracy" "$OUT/train.log" 2>/dev/null | sed 's/^/default recipe: /'
grep -h "training time\|test accuracy" "$OUT/fast.log" 2>/dev/null | sed 's/^/fast recipe: /'
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
echo "all steps passed"
