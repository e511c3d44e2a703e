"""Right and wrong answers to the exercises of chapter 5."""

import torch
import torch.nn.functional as F


def swiglu(x, w_gate, w_up, w_down):
    return (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def decoder_block(x, attention, mlp, input_norm, post_norm, dropout):
    x = x + dropout(attention(input_norm(x)))     # the norm inside the branch, then the residual
    return x + dropout(mlp(post_norm(x)))


def _decoder_block_step_by_step(x, attention, mlp, input_norm, post_norm, dropout):
    residual = x
    h = dropout(attention(input_norm(x)))
    x = residual + h
    residual = x
    h = dropout(mlp(post_norm(x)))
    return residual + h


def _post_norm(x, attention, mlp, input_norm, post_norm, dropout):       # the original Transformer's
    x = input_norm(x + dropout(attention(x)))
    return post_norm(x + dropout(mlp(x)))


def _no_residual(x, attention, mlp, input_norm, post_norm, dropout):
    x = dropout(attention(input_norm(x)))
    return dropout(mlp(post_norm(x)))


def _one_norm_twice(x, attention, mlp, input_norm, post_norm, dropout):  # post_norm's gain never used
    x = x + dropout(attention(input_norm(x)))
    return x + dropout(mlp(input_norm(x)))


def _parallel(x, attention, mlp, input_norm, post_norm, dropout):        # GPT-J's parallel block
    return x + dropout(attention(input_norm(x))) + dropout(mlp(post_norm(x)))


def _dropout_on_the_stream(x, attention, mlp, input_norm, post_norm, dropout):
    x = dropout(x + attention(input_norm(x)))
    return dropout(x + mlp(post_norm(x)))


def _no_dropout(x, attention, mlp, input_norm, post_norm, dropout):     # right in eval mode only
    x = x + attention(input_norm(x))
    return x + mlp(post_norm(x))


def _mlp_first(x, attention, mlp, input_norm, post_norm, dropout):
    x = x + dropout(mlp(post_norm(x)))
    return x + dropout(attention(input_norm(x)))


def count_parameters(c):
    attention = c.d_model * c.head_dim * (2 * c.n_heads + 2 * c.n_kv_heads) + 2 * c.head_dim
    per_layer = attention + 3 * c.d_model * c.d_ff + 2 * c.d_model
    return c.vocab_size * c.d_model + c.n_layers * per_layer + c.d_model


WRONG = {
    "swiglu": [lambda x, g, u, d: (F.silu(x @ g.T) * F.silu(x @ u.T)) @ d.T,   # activation on both
               lambda x, g, u, d: (F.gelu(x @ g.T) * (x @ u.T)) @ d.T,         # GEGLU, not SwiGLU
               lambda x, g, u, d: (F.silu(x @ u.T) * (x @ g.T)) @ d.T,         # gate and up swapped
               lambda x, g, u, d: (F.silu(x @ g) * (x @ u)) @ d],              # square weights only
    "decoder_block": [_post_norm, _no_residual, _one_norm_twice, _parallel, _dropout_on_the_stream,
                      _no_dropout, _mlp_first],
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
    "swiglu": [lambda x, g, u, d: F.linear(F.silu(F.linear(x, g)) * F.linear(x, u), d),
               lambda x, g, u, d: torch.einsum("...f,df->...d",
                                               torch.sigmoid(x @ g.T) * (x @ g.T) * (x @ u.T), d)],
    "decoder_block": [_decoder_block_step_by_step],
    "count_parameters": [_count_parameters_by_listing],
}
