"""Augmentations: NumPy references for the offsets and angles a key draws, zero fill, identity at
zero, keys, per-example draws, jit/scan/vmap, one trace per equal configuration, bad inputs."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnrs_jax.augment import (
    Chain,
    RandomRotation,
    RandomShift,
    chain,
    random_rotation,
    random_shift,
)

DTYPES = pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
AUGMENTATIONS = {
    "shift": random_shift(2),
    "rotation": random_rotation(20.0),
    "chain": chain(random_rotation(20.0), random_shift(2)),
}
EACH = pytest.mark.parametrize("augment", list(AUGMENTATIONS.values()), ids=list(AUGMENTATIONS))


def _jit(augment):
    """``augment`` under ``jax.jit``, through a function: a NamedTuple has no weak reference."""
    return jax.jit(lambda key, x: augment(key, x))


def _images(shape=(16, 28, 28, 1), dtype=jnp.float32, seed=1):
    return jax.random.uniform(jax.random.key(seed), shape, dtype)


def _numpy_shift(x, dy, dx):
    """Each image shifted by (dy[b], dx[b]) with zero fill, by slicing."""
    x, y = np.asarray(x), np.zeros(np.shape(x), np.asarray(x).dtype)
    h, w = x.shape[1:3]
    for b, (sy, sx) in enumerate(zip(dy, dx)):
        rows_out, rows_in = slice(max(sy, 0), h + min(sy, 0)), slice(max(-sy, 0), h - max(sy, 0))
        cols_out, cols_in = slice(max(sx, 0), w + min(sx, 0)), slice(max(-sx, 0), w - max(sx, 0))
        y[b, rows_out, cols_out] = x[b, rows_in, cols_in]
    return y


def _numpy_rotate(x, degrees):
    """Bilinear rotation about the centre, one pixel at a time in float64: the docstring's rule."""
    x = np.asarray(x, np.float64)
    n, h, w, _ = x.shape
    y = np.zeros_like(x)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    for b in range(n):
        t = np.deg2rad(float(degrees[b]))
        for i in range(h):
            for j in range(w):
                u = cy + np.cos(t) * (i - cy) + np.sin(t) * (j - cx)
                v = cx - np.sin(t) * (i - cy) + np.cos(t) * (j - cx)
                for p in (int(np.floor(u)), int(np.floor(u)) + 1):
                    for q in (int(np.floor(v)), int(np.floor(v)) + 1):
                        if 0 <= p < h and 0 <= q < w:
                            y[b, i, j] += (1 - abs(u - p)) * (1 - abs(v - q)) * x[b, p, q]
    return y


@DTYPES
@EACH
def test_shape_and_dtype_preserved(augment, dtype, key):
    x = _images((5, 12, 9, 3), dtype)
    for fn in (augment, _jit(augment)):
        y = fn(key, x)
        assert y.shape == x.shape and y.dtype == dtype


@DTYPES
@pytest.mark.parametrize("max_shift", [1, 2, 5])
def test_shift_matches_numpy_for_the_offsets_the_key_draws(max_shift, dtype, key):
    x = _images((32, 10, 12, 2), dtype)
    dy, dx = np.asarray(jax.random.randint(key, (2, 32), -max_shift, max_shift + 1, jnp.int32))
    assert np.abs(np.concatenate([dy, dx])).max() == max_shift  # the draws reach the bound
    got = random_shift(max_shift)(key, x)
    np.testing.assert_array_equal(np.asarray(got), _numpy_shift(x, dy, dx))


def test_shift_fills_with_zeros_and_does_not_wrap(key):
    x = jnp.ones((64, 28, 28, 1), jnp.float32)
    y = np.asarray(random_shift(4)(key, x))
    dy, dx = np.asarray(jax.random.randint(key, (2, 64), -4, 5, jnp.int32))
    np.testing.assert_array_equal(y.sum(axis=(1, 2, 3)), (28 - np.abs(dy)) * (28 - np.abs(dx)))
    assert set(np.unique(y)) == {0.0, 1.0}


def test_single_pixel_moves_by_at_most_max_shift_each_example_its_own_offset(key):
    x = jnp.zeros((512, 28, 28, 1), jnp.float32).at[:, 14, 14, 0].set(1.0)
    y = np.asarray(random_shift(2)(key, x))[..., 0]
    np.testing.assert_array_equal(y.sum(axis=(1, 2)), np.ones(512))  # mass kept: not pushed out
    rows, cols = np.nonzero(y.max(axis=2))[1], np.nonzero(y.max(axis=1))[1]
    moves = set(zip((rows - 14).tolist(), (cols - 14).tolist()))
    assert moves == {(a, b) for a in range(-2, 3) for b in range(-2, 3)}


@DTYPES
def test_rotation_matches_numpy_for_the_angles_the_key_draws(dtype, key):
    x = _images((4, 9, 11, 2), dtype)
    coord = jnp.float64 if dtype == jnp.float64 else jnp.float32
    degrees = np.asarray(jax.random.uniform(key, (4,), coord, -40.0, 40.0))
    got = random_rotation(40.0)(key, x)
    tol = 1e-12 if dtype == jnp.float64 else 1e-5
    np.testing.assert_allclose(np.asarray(got), _numpy_rotate(x, degrees), rtol=0, atol=tol)


def test_rotation_turns_counter_clockwise_about_the_centre(key):
    n, size = 64, 29
    x = jnp.zeros((n, size, size, 1), jnp.float32).at[:, 4, 14, 0].set(1.0)  # above the centre
    y = np.asarray(random_rotation(90.0)(key, x), np.float64)[..., 0]
    theta = np.deg2rad(np.asarray(jax.random.uniform(key, (n,), jnp.float32, -90.0, 90.0)))
    # Displayed coordinates (right, up) of the pixel, turned by θ: (0, 10) → (−10 sin θ, 10 cos θ).
    want_right, want_up = -10 * np.sin(theta), 10 * np.cos(theta)
    mass = y.sum(axis=(1, 2))
    grid_i, grid_j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    right = (y * (grid_j - 14)).sum(axis=(1, 2)) / mass
    up = (y * (14 - grid_i)).sum(axis=(1, 2)) / mass
    np.testing.assert_allclose(right, want_right, atol=0.3)
    np.testing.assert_allclose(up, want_up, atol=0.3)
    assert theta.min() < -1.0 and theta.max() > 1.0  # both directions were drawn


def test_rotation_of_a_centred_blob_keeps_its_mass(key):
    grid = np.arange(28) - 13.5
    blob = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 3.0**2))
    x = jnp.broadcast_to(jnp.asarray(blob, jnp.float32)[None, :, :, None], (32, 28, 28, 1))
    y = np.asarray(random_rotation(30.0)(key, x), np.float64)
    np.testing.assert_allclose(y.sum(axis=(1, 2, 3)), blob.sum(), rtol=1e-2)
    # Bilinear interpolation errs by at most (|∂²f/∂u²| + |∂²f/∂v²|)/8 = 2/(8·3²) ≈ 0.028.
    np.testing.assert_allclose(y[..., 0], np.broadcast_to(blob, (32, 28, 28)), atol=0.03)


def test_bfloat16_keeps_its_dtype_and_follows_float32(key):
    x = _images((4, 28, 28, 1))
    for augment in AUGMENTATIONS.values():
        y = augment(key, x.astype(jnp.bfloat16))
        assert y.dtype == jnp.bfloat16
        # bfloat16 keeps 8 bits: about 4e-3 relative per pixel and per bilinear weight.
        np.testing.assert_allclose(
            np.asarray(y, np.float32), np.asarray(augment(key, x)), atol=2e-2
        )


@DTYPES
def test_zero_settings_and_empty_chain_are_the_identity(dtype, key):
    x = _images((8, 28, 28, 1), dtype)
    for augment in (random_shift(0), random_rotation(0.0), chain(), chain(random_shift(0))):
        np.testing.assert_array_equal(np.asarray(_jit(augment)(key, x)), np.asarray(x))


@EACH
def test_same_key_same_output_other_key_other_output(augment, key):
    x = _images()
    first, again = augment(key, x), augment(jax.random.key(0), x)
    other = augment(jax.random.key(1), x)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


@EACH
def test_each_example_gets_its_own_draw(augment, key):
    x = jnp.broadcast_to(_images((1, 28, 28, 1)), (16, 28, 28, 1))
    y = np.asarray(augment(key, x)).reshape(16, -1)
    assert len(np.unique(y, axis=0)) >= 8


def test_chain_applies_in_order_with_split_keys(key):
    shift, rotation = random_shift(3), random_rotation(25.0)
    x = _images()
    k_first, k_second = jax.random.split(key)
    want = shift(k_second, rotation(k_first, x))
    np.testing.assert_array_equal(np.asarray(chain(rotation, shift)(key, x)), np.asarray(want))
    other_order = np.asarray(chain(shift, rotation)(key, x))
    assert not np.array_equal(other_order, np.asarray(want))


@DTYPES
@EACH
def test_under_jit_scan_and_vmap(augment, dtype, key):
    xs = _images((3, 8, 28, 28, 1), dtype)
    keys = jax.random.split(key, 3)
    want = np.stack([np.asarray(augment(k, x)) for k, x in zip(keys, xs)])
    # Fused and eager float32 round differently in the source coordinates: a few ulps of a pixel.
    tol = 1e-12 if dtype == jnp.float64 else 1e-5
    np.testing.assert_allclose(np.asarray(_jit(augment)(keys[1], xs[1])), want[1], atol=tol)
    _, scanned = jax.lax.scan(lambda c, kx: (c, augment(*kx)), None, (keys, xs))
    np.testing.assert_allclose(np.asarray(scanned), want, atol=tol)
    np.testing.assert_allclose(np.asarray(jax.vmap(augment)(keys, xs)), want, atol=tol)


def test_equal_settings_compare_and_hash_equal():
    assert random_shift(2) == random_shift(np.int64(2)) == RandomShift(2)
    assert hash(random_shift(2)) == hash(random_shift(2))
    assert random_rotation(10) == random_rotation(10.0)
    assert hash(random_rotation(10)) == hash(random_rotation(10.0))
    assert chain(random_shift(2), random_rotation(5.0)) == chain(
        random_shift(2), random_rotation(5.0)
    )
    assert hash(chain(random_shift(2))) == hash(chain(random_shift(2)))
    assert random_shift(2) != random_shift(3)
    # Same numbers, other augmentation: a plain tuple would call these equal.
    assert random_shift(2) != RandomRotation(2)
    assert random_shift(2) != (2,)
    assert chain(random_shift(2)) != Chain((RandomRotation(2),))
    assert not random_shift(2) != random_shift(2)  # noqa: SIM202


def test_a_jitted_step_traces_once_for_equal_settings(key):
    x = _images()

    @functools.partial(jax.jit, static_argnums=0)
    @chex.assert_max_traces(n=2)
    def step(augment, key, x):
        return augment(key, x).sum()

    step(random_shift(2), key, x)
    step(random_shift(2), jax.random.key(1), x)  # rebuilt: equal, so no second trace
    step(chain(random_rotation(5.0), random_shift(1)), key, x)
    step(chain(random_rotation(5.0), random_shift(1)), key, x)
    with pytest.raises(AssertionError, match="traced > 2 times"):
        step(random_shift(3), key, x)


def test_a_cached_builder_keyed_on_the_augmentation_compiles_once(key):
    x = _images()
    traced = []

    @functools.cache
    def build(augment):
        def step(key, x):
            traced.append(augment)
            return augment(key, x)

        return jax.jit(step)

    build(random_rotation(10.0))(key, x)
    build(random_rotation(10.0))(jax.random.key(1), x)
    assert traced == [random_rotation(10.0)]
    # The same number in another augmentation must not reuse the rotation's step.
    shifted = build(RandomShift(10))(key, x)
    assert traced == [random_rotation(10.0), RandomShift(10)]
    np.testing.assert_array_equal(np.asarray(shifted), np.asarray(RandomShift(10)(key, x)))


@pytest.mark.parametrize(
    ("factory", "value", "error", "message"),
    [
        (random_shift, -1, ValueError, "random_shift: max_shift must be an int >= 0, got -1"),
        (random_shift, 1.5, TypeError, r"random_shift: max_shift must be an int, got 1\.5"),
        (random_shift, True, TypeError, "random_shift: max_shift must be an int, got True"),
        (
            random_rotation,
            -5.0,
            ValueError,
            r"random_rotation: max_degrees must be a finite float >= 0 and <= 180, got -5\.0",
        ),
        (random_rotation, 181, ValueError, r"max_degrees must be .*<= 180, got 181\.0"),
        (random_rotation, float("nan"), ValueError, "max_degrees must be a finite float"),
        (random_rotation, "15", TypeError, "random_rotation: max_degrees must be a float"),
    ],
)
def test_bad_settings_raise_in_the_factory(factory, value, error, message):
    with pytest.raises(error, match=message):
        factory(value)


def test_chain_refuses_what_is_not_an_augmentation():
    with pytest.raises(TypeError, match=r"augmentation 1 .* did you forget to call the factory"):
        chain(random_shift(1), random_rotation)
    with pytest.raises(TypeError, match=r"chain: augmentation 0 must be a function .* got 3"):
        chain(3)


@pytest.mark.parametrize("name", ["random_shift", "random_rotation", "chain"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_bad_inputs_raise_clear_errors(name, jit, key):
    augment = {
        "random_shift": random_shift(2),
        "random_rotation": random_rotation(10.0),
        "chain": chain(random_shift(2)),
    }[name]
    call = _jit(augment) if jit else augment
    flat = jnp.zeros((128, 784), jnp.float32)
    want = (
        rf"{name}: x must be an NHWC batch \(batch, height, width, channels\), got shape "
        r"\(128, 784\); reshape flat images, e.g. x.reshape\(-1, 28, 28, 1\)"
    )
    with pytest.raises(ValueError, match=want):
        call(key, flat)
    with pytest.raises(ValueError, match=rf"{name}: .* got shape \(4, 28, 28\); add the channel"):
        call(key, jnp.zeros((4, 28, 28), jnp.float32))
    with pytest.raises(TypeError, match=f"{name}: x must have a floating dtype, got int32"):
        call(key, jnp.zeros((4, 28, 28, 1), jnp.int32))
    images = jnp.zeros((4, 28, 28, 1), jnp.float32)
    with pytest.raises(TypeError, match=f"{name}: key must be a PRNG key .* got int"):
        augment(0, images)
    with pytest.raises(TypeError, match=f"{name}: key must be a single PRNG key .* shape \\(4,\\)"):
        call(jax.random.split(key, 4), images)


def test_traced_settings_say_to_pass_the_augmentation_as_static(key):
    x = _images()
    with pytest.raises(TypeError, match=r"random_shift: max_shift is a traced array.*static"):
        jax.jit(lambda augment, k, x: augment(k, x))(random_shift(2), key, x)


def test_a_legacy_uint32_key_is_accepted():
    x = _images()
    legacy = jax.random.PRNGKey(0)
    assert random_shift(2)(legacy, x).shape == x.shape
    assert random_rotation(10.0)(legacy, x).shape == x.shape
