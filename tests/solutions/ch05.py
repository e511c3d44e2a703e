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


def _count_parameters_by_listing(c):
    per_layer = {"q_proj": c.d_model * c.n_heads * c.head_dim,
                 "k_proj": c.d_model * c.n_kv_heads * c.head_dim,
                 "v_proj": c.d_model * c.n_kv_heads * c.head_dim,
                 "o_proj": c.n_heads * c.head_dim * c.d_model,
                 "q_norm": c.head_dim, "k_norm": c.head_dim,
                 "gate_proj": c.d_model * c.d_ff, "up_proj": c.d_model * c.d_ff,
                 "down_proj": c.d_ff * c.d_model,
                 "input_layernorm": c.d_model, "post_attention_layernorm": c.d_model}
    return c.vocab_size * c.d_model + c.n_layers * sum(per_layer.values()) + c.d_model


ALTERNATIVE = {
    "swiglu": [lambda x, g, u, d: F.linear(F.silu(F.linear(x, g)) * F.linear(x, u), d)],
    "count_parameters": [_count_parameters_by_listing],
}
