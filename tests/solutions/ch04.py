"""Right and wrong answers to the exercises of chapter 4."""

import math


def kv_cache_bytes(n_layers, n_kv_heads, head_dim, tokens, bytes_per_value):
    return 2 * n_layers * n_kv_heads * head_dim * tokens * bytes_per_value


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


ALTERNATIVE = {
    "kv_cache_bytes": [lambda L, h, d, t, b: (L * t) * (h * d) * (2 * b)],
    "tokens_that_fit": [_tokens_that_fit_by_halving],
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
    "kv_cache_bytes": [lambda L, h, d, t, b: L * h * d * t * b,               # keys only
                       lambda L, h, d, t, b: 2 * L * h * d * t],              # forgets the bytes
    "tokens_that_fit": [_uses_hidden_over_heads, _query_heads, _rounds_up,
                        lambda c, m, b: tokens_that_fit(c, m, b) * 2,          # keys only
                        lambda c, m, b: m / _per_token(c, b)],                   # not whole tokens
}
