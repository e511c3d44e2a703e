"""Right and wrong answers to the exercises of chapter 5."""

import torch.nn.functional as F


def swiglu(x, w_gate, w_up, w_down):
    return (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def count_parameters(c):
    attention = c.d_model * c.head_dim * (2 * c.n_heads + 2 * c.n_kv_heads) + 2 * c.head_dim
    per_layer = attention + 3 * c.d_model * c.d_ff + 2 * c.d_model
    return c.vocab_size * c.d_model + c.n_layers * per_layer + c.d_model


WRONG = {
    "swiglu": [lambda x, g, u, d: (F.silu(x @ g.T) * F.silu(x @ u.T)) @ d.T,   # activation on both
               lambda x, g, u, d: (F.gelu(x @ g.T) * (x @ u.T)) @ d.T],        # GEGLU, not SwiGLU
    "count_parameters": [lambda c: count_parameters(c) + c.vocab_size * c.d_model,   # untied head
                         lambda c: count_parameters(c) - 2 * c.n_layers * c.head_dim],  # no QK-norm
}
