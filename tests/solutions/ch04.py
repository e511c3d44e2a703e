"""Right and wrong answers to the exercises of chapter 4."""

import math

import torch


def kv_cache_bytes(n_layers, n_kv_heads, head_dim, tokens, bytes_per_value):
    return 2 * n_layers * n_kv_heads * head_dim * tokens * bytes_per_value   # a key and a value


def zero_query_output(v, n_heads):
    # every score is 0, so position t weighs positions 0..t equally: the running mean of v,
    # query head h reading key/value head h // (n_heads / H_kv)
    T = v.shape[-2]
    running_mean = v.cumsum(-2) / torch.arange(1, T + 1, dtype=v.dtype)[:, None]
    return running_mean.repeat_interleave(n_heads // v.shape[1], dim=1)


def tokens_that_fit(config, memory_bytes, bytes_per_value):
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    per_token = kv_cache_bytes(config["num_hidden_layers"], config["num_key_value_heads"],
                               head_dim, 1, bytes_per_value)
    return memory_bytes // per_token


# Right answers written another way.
def _tokens_that_fit_by_halving(config, memory_bytes, bytes_per_value):
    head_dim = config["head_dim"] if "head_dim" in config else \
        config["hidden_size"] // config["num_attention_heads"]
    values_per_token = config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim
    return int(memory_bytes / bytes_per_value / 2 // values_per_token)


def causal_attention(q, k, v):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5          # (B, H, T, T)
    T = q.shape[-2]
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)   # keys after the query
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v


def _attention_by_groups(q, k, v):                 # one key/value head at a time, no copies
    B, H, T, D = q.shape
    H_kv = k.shape[1]
    qg = q.view(B, H_kv, H // H_kv, T, D)
    scores = torch.einsum("bgqtd,bgsd->bgqts", qg, k) / D ** 0.5
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return torch.einsum("bgqts,bgsd->bgqtd", weights, v).reshape(B, H, T, D)


def _no_mask(q, k, v):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v


def _mask_off_by_one(q, k, v):                      # hides the token itself too
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    T = q.shape[-2]
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=0)
    scores = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).masked_fill(future, float("-inf"))
    return torch.nan_to_num(torch.softmax(scores, dim=-1)) @ v


def _heads_round_robin(q, k, v):                    # head h reads h % H_kv, not h // group
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
    T = q.shape[-2]
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    scores = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _scaled_by_d(q, k, v):                          # 1 / D instead of 1 / sqrt(D)
    return causal_attention(q / q.shape[-1] ** 0.5, k, v)


ALTERNATIVE = {
    "zero_query_output": [lambda v, h: torch.stack([v[:, :, :t + 1].mean(-2) for t in range(v.shape[-2])], 2)
                          [:, [i * v.shape[1] // h for i in range(h)]]],
    "tokens_that_fit": [_tokens_that_fit_by_halving],
    "causal_attention": [_attention_by_groups],
}


def _per_token(config, bytes_per_value, heads="num_key_value_heads", head_dim=None):
    head_dim = head_dim or config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return kv_cache_bytes(config["num_hidden_layers"], config[heads], head_dim, 1, bytes_per_value)


def _uses_hidden_over_heads(config, memory_bytes, bytes_per_value):   # ignores head_dim
    return memory_bytes // _per_token(config, bytes_per_value,
                                      head_dim=config["hidden_size"] // config["num_attention_heads"])


def _query_heads(config, memory_bytes, bytes_per_value):              # MHA's cache, not GQA's
    return memory_bytes // _per_token(config, bytes_per_value, heads="num_attention_heads")


def _rounds_up(config, memory_bytes, bytes_per_value):                # a part of a token does not fit
    return math.ceil(memory_bytes / _per_token(config, bytes_per_value))


WRONG = {
    "zero_query_output": [lambda v, h: v.mean(-2, keepdim=True).expand_as(v).repeat_interleave(h // v.shape[1], 1),  # not causal
                          lambda v, h: v.cumsum(-2).repeat_interleave(h // v.shape[1], 1),          # a sum
                          lambda v, h: v.repeat_interleave(h // v.shape[1], 1),                     # its own value
                          lambda v, h: (v.cumsum(-2) / torch.arange(1, v.shape[-2] + 1)[:, None])[:, [i % v.shape[1] for i in range(h)]]],  # round robin
    "tokens_that_fit": [_uses_hidden_over_heads, _query_heads, _rounds_up,
                        lambda c, m, b: tokens_that_fit(c, m, b) * 2,          # keys only
                        lambda c, m, b: m / _per_token(c, b)],                   # not whole tokens
    "causal_attention": [_no_mask, _mask_off_by_one, _heads_round_robin, _scaled_by_d],
}
