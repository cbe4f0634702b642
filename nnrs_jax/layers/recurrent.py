"""Recurrent layers `lstm` and `gru`: a ``lax.scan`` over time, backpropagated through time.

Both take a batch of sequences ``x`` ``(batch, time, in_features)``, start from a zero state
(or from one given with ``x``: ``(x, (h0, c0))``, ``(x, h0)``) and return the last hidden
state ``(batch, hidden)``, or every hidden state ``(batch, time, hidden)`` with
``return_sequences=True`` (to stack recurrent layers).

The backward pass is written by hand (backpropagation through time): it reruns the forward
scan keeping each step's gate activations, then runs a reverse ``lax.scan`` carrying the
gradient of the state into the step before. The input projections ``x·W_x`` of all steps are
one matrix product before the forward scan, and ``dW_x``, ``dW_h``, ``db`` and ``dx`` are one
product (or sum) each over all steps after the reverse scan, so each scan step multiplies only
by ``W_h`` (forward) or ``W_hᵀ`` (backward).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax import initializers
from nnrs_jax._validate import check_bool, check_float, check_int
from nnrs_jax.layers._checks import check_grad_shape, check_sequence
from nnrs_jax.layers.base import Layer, layer_factory, weight_penalty
from nnrs_jax.regularizers import Regularizer

__all__ = ["GRUParams", "LSTMParams", "gru", "lstm"]


class LSTMParams(NamedTuple):
    """Parameters of `lstm`, gates in the order ``i, f, g, o`` (blocks of ``hidden`` columns).

    Attributes:
        w_x: input weights ``(in_features, 4·hidden)``.
        w_h: recurrent weights ``(hidden, 4·hidden)``.
        b: bias ``(4·hidden,)``.
    """

    w_x: jax.Array
    w_h: jax.Array
    b: jax.Array


class GRUParams(NamedTuple):
    """Parameters of `gru`, gates in the order ``r, z, n`` (blocks of ``hidden`` columns).

    Attributes:
        w_x: input weights ``(in_features, 3·hidden)``.
        w_h: recurrent weights ``(hidden, 3·hidden)``.
        b_x: input bias ``(3·hidden,)``.
        b_h: recurrent bias ``(3·hidden,)``; its ``n`` block is scaled by the reset gate.
    """

    w_x: jax.Array
    w_h: jax.Array
    b_x: jax.Array
    b_h: jax.Array


def _settings(
    caller: str, in_features: int, hidden: int, return_sequences: bool, dtype: jnp.dtype
) -> tuple[int, int, bool, str]:
    """The checked factory arguments and the layer's name."""
    in_features = check_int(caller, "in_features", in_features, low=1)
    hidden = check_int(caller, "hidden", hidden, low=1)
    return_sequences = check_bool(caller, "return_sequences", return_sequences)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{caller}: dtype must be a floating dtype, got {jnp.dtype(dtype)}")
    suffix = ", return_sequences=True" if return_sequences else ""
    return in_features, hidden, return_sequences, f"{caller}({in_features}, {hidden}{suffix})"


def _gate_blocks(
    init_fn: initializers.Initializer,
    key: jax.Array,
    rows: int,
    hidden: int,
    gates: int,
    dtype: jnp.dtype,
) -> jax.Array:
    """``(rows, gates·hidden)``: one ``init_fn(key_k, (rows, hidden))`` block per gate."""
    keys = jax.random.split(key, gates)
    return jnp.concatenate([init_fn(k, (rows, hidden), dtype) for k in keys], axis=1)


def _output_shape(x: jax.Array, hidden: int, return_sequences: bool) -> tuple[int, ...]:
    batch, time, _ = x.shape
    return (batch, time, hidden) if return_sequences else (batch, hidden)


def _sigmoid(z: jax.Array) -> jax.Array:
    """``σ(z) = 1/(1 + e^{−z}) = (1 + tanh(z/2))/2``; XLA's CPU ``tanh`` is the faster kernel."""
    return 0.5 * jnp.tanh(0.5 * z) + 0.5


def _sigmoid_grad(s: jax.Array) -> jax.Array:
    return s * (1 - s)


def _previous(seq: jax.Array, first: jax.Array) -> jax.Array:
    """``(time, batch, n)``: the states before each step, the initial state ``first`` first."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def _split(name: str, x: Any, in_features: int, hidden: int, parts: tuple[str, ...]):
    """``x`` or ``(x, initial state)``: the sequence and the state's arrays (zeros if absent).

    ``parts`` names the state's arrays: ``("h0",)`` for `gru` (``(x, h0)``), ``("h0", "c0")``
    for `lstm` (``(x, (h0, c0))``); each must be ``(batch, hidden)`` with ``x``'s dtype.
    """
    form = "(x, h0)" if len(parts) == 1 else "(x, (h0, c0))"
    if type(x) is not tuple:
        check_sequence(name, x, in_features)
        zeros = jnp.zeros((x.shape[0], hidden), x.dtype)
        return x, (zeros,) * len(parts), False
    if len(x) != 2:
        raise TypeError(f"{name}: x must be an array or a pair {form}, got a tuple of {len(x)}")
    seq, init = x
    check_sequence(name, seq, in_features)
    states = (init,) if len(parts) == 1 else init
    if type(states) is not tuple or len(states) != len(parts):
        raise TypeError(f"{name}: x must be an array or a pair {form}: the initial state must "
                        f"be {form[4:-1]}, got {type(init).__name__}")  # fmt: skip
    want = (seq.shape[0], hidden)
    for label, a in zip(parts, states):
        if not (hasattr(a, "shape") and hasattr(a, "dtype")):
            raise TypeError(f"{name}: {label} must be an array, got {type(a).__name__}")
        if tuple(a.shape) != want:
            raise ValueError(f"{name}: {label} must have shape (batch, hidden) = {want}, "
                             f"got {tuple(a.shape)}")  # fmt: skip
        if a.dtype != seq.dtype:
            raise TypeError(f"{name}: {label} must have x's dtype {seq.dtype}, got {a.dtype}")
    return seq, states, True


def _reverse_inputs(
    grad_y: jax.Array, return_sequences: bool
) -> tuple[jax.Array, jax.Array | None]:
    """The initial ``dh`` carry and the per-step ``∂L/∂h_t`` (time first) of the reverse scan.

    Without ``return_sequences`` only ``h_T`` is an output: ``dh`` starts at ``grad_y`` and no
    step adds to it (``None``).
    """
    if return_sequences:
        dh_seq = jnp.swapaxes(grad_y, 0, 1)
        return jnp.zeros_like(dh_seq[0]), dh_seq
    return grad_y, None


def _add_step(dh: jax.Array, dh_t: jax.Array | None) -> jax.Array:
    return dh if dh_t is None else dh + dh_t


@layer_factory
def lstm(
    in_features: int,
    hidden: int,
    *,
    return_sequences: bool = False,
    init: str | initializers.Initializer = "glorot",
    forget_bias: float = 1.0,
    regularizer: Regularizer | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Long short-term memory layer with a forget gate (no peepholes).

    Forward, for ``t = 1..T`` from ``h_0 = c_0 = 0`` (or the state given with ``x``, see
    below), with ``x_t`` ``(batch, in_features)``::

        z_t = x_t·W_x + h_{t−1}·W_h + b          (batch, 4·hidden), split into i, f, g, o
        i_t = σ(z_i)   f_t = σ(z_f)   g_t = tanh(z_g)   o_t = σ(z_o)
        c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)

    Shapes: ``x`` ``(batch, time, in_features)``, ``W_x`` ``(in_features, 4·hidden)``, ``W_h``
    ``(hidden, 4·hidden)``, ``b`` ``(4·hidden,)``; ``y = h_T`` ``(batch, hidden)``, or
    ``y = (h_1, …, h_T)`` ``(batch, time, hidden)`` with ``return_sequences``. Each step of the
    ``lax.scan`` computes its own ``x_t·W_x`` (measured faster on CPU than one product for all
    steps read back slice by slice), and ``σ(z) = (1 + tanh(z/2))/2``.

    Backward (BPTT): the forward scan is rerun keeping ``(i, f, g, o)``, ``c_t`` and ``h_t``
    (a forward pass with ``train=True`` keeps the same, so that XLA computes the two as one in
    a training step; with ``train=False`` it keeps only ``h_t``); a reverse ``lax.scan``
    (``reverse=True``) carries ``(dh, dc)`` from ``dh = ∂L/∂h_T``
    (plus ``∂L/∂h_t`` at each step with ``return_sequences``) and ``dc = 0``::

        dc   = dc + dh ⊙ o ⊙ (1 − tanh²c_t)
        dz_t = [dc ⊙ g ⊙ i(1−i),  dc ⊙ c_{t−1} ⊙ f(1−f),  dc ⊙ i ⊙ (1−g²),
                dh ⊙ tanh(c_t) ⊙ o(1−o)]
        dh_{t−1} = dz_t·W_hᵀ,   dc_{t−1} = dc ⊙ f

    then, over all steps at once: ``dW_x = Σ_t x_tᵀ·dz_t``, ``dW_h = Σ_t h_{t−1}ᵀ·dz_t``,
    ``db = Σ_t Σ_batch dz_t`` and ``dx_t = dz_t·W_xᵀ``.

    Initial state: ``x`` may be the pair ``(x, (h0, c0))``, ``h0`` and ``c0`` ``(batch,
    hidden)``; ``grad_x`` is then ``(dx, (dh0, dc0))``, the reverse scan's last carry.

    Reference: Hochreiter & Schmidhuber 1997, "Long Short-Term Memory"; the forget gate from
    Gers, Schmidhuber & Cummins 2000, "Learning to Forget: Continual Prediction with LSTM".

    Args:
        in_features: features per time step, a positive int.
        hidden: the hidden (and cell) size, a positive int.
        return_sequences: return every ``h_t`` ``(batch, time, hidden)`` instead of the last.
        init: the initializer of ``W_x`` and ``W_h``, applied to each gate's block
            (``(in_features, hidden)`` or ``(hidden, hidden)``) separately: ``"glorot"``
            (default), ``"he"``, ``"lecun"`` or a function of `nnrs_jax.initializers`.
        forget_bias: the initial bias of the forget gate, 1.0 by default, so that the cell
            keeps its content at first (Gers et al. 2000; Jozefowicz et al. 2015); the other
            biases start at zero.
        regularizer: an `l1`, `l2` or `elastic_net` penalty on ``W_x`` and ``W_h`` (never on
            the biases).
        dtype: dtype of the parameters, float32 by default.

    Examples:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> layer = nj.lstm(3, 5)
        >>> params = layer.init(jax.random.key(0))
        >>> params.w_x.shape, params.w_h.shape, params.b.shape
        ((3, 20), (5, 20), (20,))
        >>> x = jax.random.normal(jax.random.key(1), (2, 7, 3))
        >>> layer.apply(params, x).shape
        (2, 5)
        >>> nj.output_shape(nj.lstm(3, 5, return_sequences=True), (2, 7, 3))
        (2, 7, 5)
        >>> nj.check_layer(layer, x).ok
        True
    """
    in_features, hidden, return_sequences, name = _settings(
        "lstm", in_features, hidden, return_sequences, dtype
    )
    init_fn = initializers.resolve(init, caller="lstm")
    forget_bias = check_float("lstm", "forget_bias", forget_bias)
    h = hidden

    def init_params(key: jax.Array) -> LSTMParams:
        kx, kh = jax.random.split(key)
        b = jnp.zeros((4 * h,), dtype).at[h : 2 * h].set(forget_bias)
        return LSTMParams(
            w_x=_gate_blocks(init_fn, kx, in_features, h, 4, dtype),
            w_h=_gate_blocks(init_fn, kh, h, h, 4, dtype),
            b=b,
        )

    def scan_forward(params: LSTMParams, x: jax.Array, init: tuple, keep: bool) -> jax.Array:
        """Per step (time first): ``h`` ``(time, batch, hidden)``, or with ``keep`` every
        step's ``[h, c, i, f, g, o]`` side by side, ``(time, batch, 6·hidden)``.

        ``keep`` gives one array, so that a training forward pass (which reads ``h`` from it)
        and the one `backward` reruns are the same computation, which XLA computes once per
        training step. Only ``h`` is kept otherwise (inference, the last step alone).
        """

        def step(carry: tuple, x_t: jax.Array) -> tuple:
            h_prev, c_prev = carry
            z = x_t @ params.w_x + h_prev @ params.w_h + params.b[None, :]
            i = _sigmoid(z[:, :h])
            f = _sigmoid(z[:, h : 2 * h])
            g = jnp.tanh(z[:, 2 * h : 3 * h])
            o = _sigmoid(z[:, 3 * h :])
            c = f * c_prev + i * g
            h_t = o * jnp.tanh(c)
            return (h_t, c), (jnp.concatenate([h_t, c, i, f, g, o], axis=1) if keep else h_t)

        return jax.lax.scan(step, init, jnp.swapaxes(x, 0, 1))[1]

    def forward(
        params: LSTMParams, x: jax.Array, *, state: None, key: jax.Array | None, train: bool
    ) -> tuple[jax.Array, None]:
        seq, init, _ = _split(name, x, in_features, h, ("h0", "c0"))
        hs = scan_forward(params, seq, init, keep=train)[:, :, :h]
        return (jnp.swapaxes(hs, 0, 1) if return_sequences else hs[-1]), state

    def backward(
        params: LSTMParams,
        x: jax.Array,
        grad_y: jax.Array,
        *,
        state: None,
        key: jax.Array | None,
        train: bool,
    ) -> tuple[LSTMParams, jax.Array]:
        x, (h0, c0), given = _split(name, x, in_features, h, ("h0", "c0"))
        check_grad_shape(name, grad_y, _output_shape(x, h, return_sequences))
        saved = scan_forward(params, x, (h0, c0), keep=True)
        hs, cs, *gates = (saved[:, :, k * h : (k + 1) * h] for k in range(6))
        dh_last, dh_seq = _reverse_inputs(grad_y, return_sequences)

        def step(carry: tuple, inputs: tuple) -> tuple:
            dh, dc = carry
            dh_t, (i, f, g, o), c, c_prev = inputs
            dh = _add_step(dh, dh_t)
            tc = jnp.tanh(c)
            dc = dc + dh * o * (1 - tc * tc)
            dz = jnp.concatenate(
                [
                    dc * g * _sigmoid_grad(i),
                    dc * c_prev * _sigmoid_grad(f),
                    dc * i * (1 - g * g),
                    dh * tc * _sigmoid_grad(o),
                ],
                axis=1,
            )
            return (dz @ w_h_t, dc * f), dz

        # Wₕᵀ made once, row-major, for the product of every step.
        w_h_t = jax.lax.optimization_barrier(params.w_h.T)
        steps = (dh_seq, tuple(gates), cs, _previous(cs, c0))
        d0, dz = jax.lax.scan(step, (dh_last, jnp.zeros_like(dh_last)), steps, reverse=True)
        grads = LSTMParams(
            w_x=jnp.einsum("btf,tbg->fg", x, dz),
            w_h=jnp.einsum("tbk,tbg->kg", _previous(hs, h0), dz),
            b=jnp.sum(dz, axis=(0, 1)),
        )
        grad_x = jnp.einsum("tbg,fg->btf", dz, params.w_x)
        return grads, ((grad_x, d0) if given else grad_x)

    penalty = weight_penalty("lstm", regularizer, ("w_x", "w_h"))
    return Layer.context(init_params, forward, backward, name=name, penalty=penalty)


@layer_factory
def gru(
    in_features: int,
    hidden: int,
    *,
    return_sequences: bool = False,
    init: str | initializers.Initializer = "glorot",
    regularizer: Regularizer | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Gated recurrent unit layer, PyTorch's and Flax's variant (reset after the matmul).

    Forward, for ``t = 1..T`` from ``h_0 = 0`` (or ``h0`` given as ``x = (x, h0)``, ``(batch,
    hidden)``; ``grad_x`` is then ``(dx, dh0)``), with ``x_t`` ``(batch, in_features)``, the
    input part ``a_t = x_t·W_x + b_x`` and the recurrent part ``u_t = h_{t−1}·W_h + b_h``,
    both ``(batch, 3·hidden)`` and split into ``r, z, n`` blocks::

        r_t = σ(a_r + u_r)
        z_t = σ(a_z + u_z)
        n_t = tanh(a_n + r_t ⊙ u_n)            u_n = h_{t−1}·W_hn + b_hn
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

    The reset gate scales ``h_{t−1}·W_hn + b_hn`` (after the matrix product), as in PyTorch's
    ``nn.GRU`` and Flax's ``GRUCell``, not ``(r_t ⊙ h_{t−1})·W_hn`` as in Cho et al.'s paper:
    all three gates' recurrent products are then one product ``h_{t−1}·W_h`` per step.

    Shapes: ``x`` ``(batch, time, in_features)``, ``W_x`` ``(in_features, 3·hidden)``,
    ``W_h`` ``(hidden, 3·hidden)``, ``b_x``, ``b_h`` ``(3·hidden,)``; ``y = h_T`` ``(batch,
    hidden)``, or ``(h_1, …, h_T)`` ``(batch, time, hidden)`` with ``return_sequences``.

    Backward (BPTT): the forward scan is rerun keeping ``r, z, n, u_n`` and ``h_t``; a reverse
    ``lax.scan`` (``reverse=True``) carries ``dh`` from ``∂L/∂h_T`` (plus ``∂L/∂h_t`` at each
    step with ``return_sequences``)::

        dn = dh ⊙ (1 − z) ⊙ (1 − n²)
        dz = dh ⊙ (h_{t−1} − n) ⊙ z(1 − z)
        dr = dn ⊙ u_n ⊙ r(1 − r)
        da_t = [dr, dz, dn]     du_t = [dr, dz, dn ⊙ r]
        dh_{t−1} = dh ⊙ z + du_t·W_hᵀ

    then, over all steps at once: ``dW_x = Σ_t x_tᵀ·da_t``, ``db_x = Σ_t Σ_batch da_t``,
    ``dW_h = Σ_t h_{t−1}ᵀ·du_t``, ``db_h = Σ_t Σ_batch du_t`` and ``dx_t = da_t·W_xᵀ``.

    Reference: Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder
    for Statistical Machine Translation" (the gates); the reset-after variant as in PyTorch.

    Args:
        in_features: features per time step, a positive int.
        hidden: the hidden size, a positive int.
        return_sequences: return every ``h_t`` ``(batch, time, hidden)`` instead of the last.
        init: the initializer of ``W_x`` and ``W_h``, applied to each gate's block
            separately: ``"glorot"`` (default), ``"he"``, ``"lecun"`` or a function of
            `nnrs_jax.initializers`; the biases start at zero.
        regularizer: an `l1`, `l2` or `elastic_net` penalty on ``W_x`` and ``W_h`` (never on
            the biases).
        dtype: dtype of the parameters, float32 by default.

    Examples:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> layer = nj.gru(3, 5, return_sequences=True)
        >>> params = layer.init(jax.random.key(0))
        >>> params.w_x.shape, params.w_h.shape, params.b_x.shape, params.b_h.shape
        ((3, 15), (5, 15), (15,), (15,))
        >>> x = jax.random.normal(jax.random.key(1), (2, 7, 3))
        >>> layer.apply(params, x).shape
        (2, 7, 5)
        >>> nj.check_layer(layer, x).ok
        True
    """
    in_features, hidden, return_sequences, name = _settings(
        "gru", in_features, hidden, return_sequences, dtype
    )
    init_fn = initializers.resolve(init, caller="gru")
    h = hidden

    def init_params(key: jax.Array) -> GRUParams:
        kx, kh = jax.random.split(key)
        return GRUParams(
            w_x=_gate_blocks(init_fn, kx, in_features, h, 3, dtype),
            w_h=_gate_blocks(init_fn, kh, h, h, 3, dtype),
            b_x=jnp.zeros((3 * h,), dtype),
            b_h=jnp.zeros((3 * h,), dtype),
        )

    def scan_forward(
        params: GRUParams, x: jax.Array, h0: jax.Array, keep: bool
    ) -> tuple[jax.Array, tuple]:
        """The last ``h``, and per step (time first) ``h`` and ``[r, z, n, u_n]`` if ``keep``."""
        xw = jnp.einsum("btf,fg->tbg", x, params.w_x) + params.b_x[None, None, :]

        def step(h_prev: jax.Array, a: jax.Array) -> tuple:
            u = h_prev @ params.w_h + params.b_h[None, :]
            r = _sigmoid(a[:, :h] + u[:, :h])
            z = _sigmoid(a[:, h : 2 * h] + u[:, h : 2 * h])
            u_n = u[:, 2 * h :]
            n = jnp.tanh(a[:, 2 * h :] + r * u_n)
            h_t = (1 - z) * n + z * h_prev
            if keep:
                return h_t, (h_t, jnp.concatenate([r, z, n, u_n], axis=1))
            return h_t, (h_t if return_sequences else ())

        return jax.lax.scan(step, h0, xw)

    def apply(params: GRUParams, x: jax.Array | tuple) -> jax.Array:
        seq, (h0,), _ = _split(name, x, in_features, h, ("h0",))
        h_last, hs = scan_forward(params, seq, h0, keep=False)
        return jnp.swapaxes(hs, 0, 1) if return_sequences else h_last

    def backward(params: GRUParams, x: jax.Array | tuple, grad_y: jax.Array) -> tuple:
        x, (h0,), given = _split(name, x, in_features, h, ("h0",))
        check_grad_shape(name, grad_y, _output_shape(x, h, return_sequences))
        _, (hs, acts) = scan_forward(params, x, h0, keep=True)
        dh_last, dh_seq = _reverse_inputs(grad_y, return_sequences)

        def step(dh: jax.Array, inputs: tuple) -> tuple:
            dh_t, act, h_prev = inputs
            dh = _add_step(dh, dh_t)
            r, z, n, u_n = (act[:, k * h : (k + 1) * h] for k in range(4))
            dn = dh * (1 - z) * (1 - n * n)
            dz = dh * (h_prev - n) * _sigmoid_grad(z)
            dr = dn * u_n * _sigmoid_grad(r)
            da = jnp.concatenate([dr, dz, dn], axis=1)
            du = jnp.concatenate([dr, dz, dn * r], axis=1)
            return dh * z + du @ params.w_h.T, (da, du)

        h_prevs = _previous(hs, h0)
        steps = (dh_seq, acts, h_prevs)
        dh0, (da, du) = jax.lax.scan(step, dh_last, steps, reverse=True)
        grads = GRUParams(
            w_x=jnp.einsum("btf,tbg->fg", x, da),
            w_h=jnp.einsum("tbk,tbg->kg", h_prevs, du),
            b_x=jnp.sum(da, axis=(0, 1)),
            b_h=jnp.sum(du, axis=(0, 1)),
        )
        grad_x = jnp.einsum("tbg,fg->btf", da, params.w_x)
        return grads, ((grad_x, dh0) if given else grad_x)

    penalty = weight_penalty("gru", regularizer, ("w_x", "w_h"))
    return Layer(init_params, apply, backward, name=name, penalty=penalty)
