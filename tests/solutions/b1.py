"""Right and wrong answers to the exercises of engineering notebook B1 (GGUF)."""

import struct


def gguf_data_bytes(config, dtype):
    matrix = 2 if dtype == "f16" else 4           # bytes per matrix weight; gains stay f32
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    block = (config.d_model * (q + 2 * kv) + q * config.d_model       # q, k, v, o
             + 3 * config.d_model * config.d_ff) * matrix              # gate, up, down
    block += (2 * config.d_model + 2 * config.head_dim) * 4           # 2 norms, q_norm, k_norm
    heads = 1 if config.tie_word_embeddings else 2                     # the tied head is stored once
    return (config.n_layers * block + heads * config.vocab_size * config.d_model * matrix
            + config.d_model * 4)                                      # final norm


def _by_shapes(config, dtype):
    import torch
    from qwenlib import MinimalLLM
    with torch.device("meta"):
        model = MinimalLLM(config)
    params = dict(model.named_parameters())   # named_parameters lists a shared tensor once
    return sum(p.numel() * (2 if dtype == "f16" and p.ndim == 2 else 4) for p in params.values())


def read_header(path):
    with open(path, "rb") as f:
        magic, version, tensors, entries = struct.unpack("<4sIQQ", f.read(24))
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    return version, tensors, entries


def _header_by_from_bytes(path):
    data = open(path, "rb").read(24)
    if not data.startswith(b"GGUF"):
        raise ValueError("not GGUF")
    number = lambda a, b: int.from_bytes(data[a:b], "little")  # noqa: E731
    return number(4, 8), number(8, 16), number(16, 24)


ALTERNATIVE = {"gguf_data_bytes": [_by_shapes], "read_header": [_header_by_from_bytes]}


def _head_twice(config, dtype):          # stores the tied output layer again
    extra = config.vocab_size * config.d_model * (2 if dtype == "f16" else 4)
    return gguf_data_bytes(config, dtype) + (extra if config.tie_word_embeddings else 0)


def _gains_in_f16_too(config, dtype):    # every tensor in f16, norm gains included
    if dtype == "f32":
        return gguf_data_bytes(config, dtype)
    gains = config.n_layers * (2 * config.d_model + 2 * config.head_dim) + config.d_model
    return gguf_data_bytes(config, dtype) - 2 * gains


def _head_dim_from_width(config, dtype):  # d_model / n_heads instead of head_dim
    from dataclasses import replace
    return gguf_data_bytes(replace(config, head_dim=config.d_model // config.n_heads), dtype)


def _reading(layout: str, size: int):
    """A header reader that unpacks `size` bytes with another struct layout."""
    def read(path):
        with open(path, "rb") as f:
            magic, version, tensors, entries = struct.unpack(layout, f.read(size))
        if magic != b"GGUF":
            raise ValueError("not GGUF")
        return version, tensors, entries
    return read


_big_endian = _reading(">4sIQQ", 24)        # GGUF is little-endian
_counts_as_uint32 = _reading("<4sIII", 16)  # the two counts are 64-bit


def _no_magic_check(path):
    with open(path, "rb") as f:
        return struct.unpack("<4sIQQ", f.read(24))[1:]


WRONG = {"gguf_data_bytes": [_head_twice, _gains_in_f16_too, _head_dim_from_width],
         "read_header": [_big_endian, _counts_as_uint32, _no_magic_check]}
