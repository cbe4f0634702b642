"""The same key gives bit-identical parameters in two separate processes on CPU.

Each process builds a model, initializes it from a key and trains it for a few shuffled
mini-batch steps in the default configuration (float32, x64 off), then prints SHA-256 digests of
the raw bytes of every parameter. The processes differ in their hash seed, so nothing may depend
on the order of a set or dict.
"""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import hashlib, sys
import jax, jax.numpy as jnp, numpy as np
import nnrs_jax as nj

def digest(tree):
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()

model = nj.serial(nj.dense(20, 16), nj.elu(), nj.dense(16, 3, regularizer=nj.l2(1e-3)))
x = jax.random.normal(jax.random.key(100), (64, 20), jnp.float32)
y = jax.random.randint(jax.random.key(101), (64,), 0, 3, jnp.int32)
optimizer = nj.adam(1e-2)
for seed in (0, 1):
    key = jax.random.key(seed)
    fitted = nj.fit(model, nj.cross_entropy, optimizer, x, y, key=key, epochs=2, batch_size=16,
                    progress=False)
    print(seed, digest(model.init(key)), digest(fitted.params), digest(fitted.opt_state))
"""


def _run_twice() -> list[str]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONHASHSEED": str(hash_seed)},
        )
        for hash_seed in (1, 2)
    ]
    outputs = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        assert process.returncode == 0, err
        outputs.append(out)
    return outputs


def test_same_key_same_bits_in_two_processes() -> None:
    first, second = _run_twice()
    assert first == second
    lines = [line.split() for line in first.splitlines()]
    assert [line[0] for line in lines] == ["0", "1"]
    # The digests see the parameters: another key gives other bits, training changes them.
    init0, trained0, state0 = lines[0][1:]
    init1, trained1, state1 = lines[1][1:]
    assert init0 != init1 and trained0 != trained1 and state0 != state1
    assert init0 != trained0
