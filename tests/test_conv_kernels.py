"""conv2d's implementations: every policy's forward against lax.conv_general_dilated and its
hand-written backward against jax.vjp (float64 and float32, under jit, vmap and lax.scan), the
policies' candidates, and a bad ``impl``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, check_vmap_and_scan, rel_err
from test_conv import CASES, _case, _reference_forward, _vjp

import nnrs_jax as nj
from nnrs_jax.layers import conv_kernels

POLICIES = tuple(conv_kernels.POLICIES)


def _policy_case(case: str, policy: str, dtype, seed: int = 0):
    _, params, x, dy = _case(case, dtype, seed)
    c_in, c_out, kernel, stride, padding, _ = CASES[case]
    return nj.conv2d(c_in, c_out, kernel, stride, padding, dtype=dtype, impl=policy), params, x, dy


# The default policy, "patches", is what tests/test_conv.py checks on every geometry (the
# suite runs with NNRS_JAX_AUTOTUNE=off); here the others, on the geometries that exercise
# each code path (one channel, strides with "same", explicit and oversized padding, a
# non-square kernel) in float64, and three of them in float32.
OTHERS = tuple(p for p in POLICIES if p != "patches")
F64_CASES = ("3x3", "one_channel", "stride2_same", "pair_padding_stride3",
             "padding_above_kernel", "non_square_one_channel")  # fmt: skip
F32_CASES = ("3x3", "one_channel", "stride2_same")


@pytest.mark.parametrize(
    ("case", "dtype"),
    [(c, jnp.float64) for c in F64_CASES] + [(c, jnp.float32) for c in F32_CASES],
    ids=[f"{c}-f64" for c in F64_CASES] + [f"{c}-f32" for c in F32_CASES],
)
@pytest.mark.parametrize("policy", OTHERS)
def test_every_policy_matches_lax_and_vjp(case, policy, dtype):
    """The forward against lax's convolution, the backward against ``jax.vjp`` of it."""
    layer, params, x, dy = _policy_case(case, policy, dtype, seed=4)
    y = jax.jit(layer.apply)(params, x)
    assert rel_err(y, jax.jit(_reference_forward(case))(params, x)) <= TOL[dtype]
    report = nj.check_layer(layer, x, params=params, key=jax.random.key(4), rtol=TOL[dtype])
    assert report.ok, str(report)
    grads = jax.jit(layer.backward)(params, x, dy)
    assert grads[0].w.dtype == dtype and grads[1].dtype == dtype


@pytest.mark.parametrize("policy", OTHERS)
def test_every_policy_under_vmap_and_scan(policy):
    layer, params, x, dy = _policy_case("stride2_same", policy, jnp.float64, seed=5)
    xs = jnp.stack([x, 0.5 * x - 1.0, -x])
    dys = jnp.stack([dy, -dy, 2.0 * dy])
    check_vmap_and_scan(layer, params, xs, dys, lambda p, a, b: _vjp(layer.apply, p, a, b))


def test_policies_differ_in_what_they_run():
    """The policies are different programs: XLA's convolution appears only where chosen."""
    _, params, x, dy = _policy_case("3x3", "patches", jnp.float32)

    def text(policy):
        c_in, c_out, kernel, stride, padding, _ = CASES["3x3"]
        layer = nj.conv2d(c_in, c_out, kernel, stride, padding, impl=policy)
        both = jax.jit(lambda p, a, d: (layer.apply(p, a), layer.backward(p, a, d)))
        return both.lower(params, x, dy).as_text()

    counts = {p: text(p).count("convolution") for p in POLICIES}
    assert counts["shifted"] == 0
    assert counts["patches"] == 1  # dx only
    assert counts["xla"] == 3  # y, dW and dx
    assert counts["xla_forward"] == 2  # y and dx


def test_one_channel_patches_forward_is_shifted():
    assert conv_kernels.candidates("patches", 1) == ("shifted", "patches", "xla")
    assert conv_kernels.candidates("patches", 3) == ("patches", "patches", "xla")
    assert conv_kernels.candidates("xla", 1) == ("xla", "xla", "xla")


def test_impl_is_part_of_the_layer_and_checked():
    assert nj.conv2d(2, 3, 3) == nj.conv2d(2, 3, 3, impl="auto")
    assert nj.conv2d(2, 3, 3, impl="xla") != nj.conv2d(2, 3, 3, impl="patches")
    with pytest.raises(
        ValueError, match=r"conv2d: impl must be 'auto' or one of .*'xla'.*got 'cudnn'"
    ):
        nj.conv2d(2, 3, 3, impl="cudnn")


def test_every_candidate_computes_the_same_products():
    """Each table's candidates agree with each other directly, stride and padding included."""
    rng = np.random.default_rng(6)
    g = conv_kernels.Geometry((3, 2), (2, 1), ((1, 1), (0, 1)), (4, 7))
    x = jnp.asarray(rng.normal(size=(3, 7, 7, 4)))
    w = jnp.asarray(rng.normal(size=(3, 2, 4, 5)))
    dy = jnp.asarray(rng.normal(size=(3, 4, 7, 5)))
    ys = [f(x, w, g) for f in conv_kernels.FORWARD.values()]
    dws = [f(x, dy, w.shape, g) for f in conv_kernels.GRAD_W.values()]
    dxs = [f(dy, w, x.shape, g) for f in conv_kernels.GRAD_X.values()]
    for group in (ys, dws, dxs):
        for other in group[1:]:
            assert rel_err(other, group[0]) <= 1e-12
