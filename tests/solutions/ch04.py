"""Right and wrong answers to the exercises of chapter 4."""

import torch


def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


def kv_cache_bytes(n_layers, n_kv_heads, head_dim, tokens, bytes_per_value):
    return 2 * n_layers * n_kv_heads * head_dim * tokens * bytes_per_value


WRONG = {
    "causal_mask": [lambda T: torch.ones(T, T, dtype=torch.bool).triu(),       # sees the future
                    lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1),     # cannot see itself
                    lambda T: torch.ones(T, T).tril()],                        # not bool
    "kv_cache_bytes": [lambda L, h, d, t, b: L * h * d * t * b,               # keys only
                       lambda L, h, d, t, b: 2 * L * h * d * t],              # forgets the bytes
}
