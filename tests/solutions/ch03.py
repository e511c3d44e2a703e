"""Right and wrong answers to the exercises of chapter 3."""

import math

import torch


def convert(weight, head_dim):
    """Interleaved pairs (2i, 2i+1) -> rotate-half pairs (i, i + head_dim/2), head by head."""
    heads = weight.view(-1, head_dim, weight.shape[-1])                # (heads, head_dim, d_model)
    order = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    return heads[:, order].reshape(weight.shape)


def ones_score(distance, head_dim, theta):
    # pair i of q and of k is (1, 1); rotations by m w_i and n w_i leave a dot product of
    # (1, 1) . R((n - m) w_i) (1, 1) = 2 cos((n - m) w_i)
    return sum(2 * math.cos(distance * theta ** (-2 * i / head_dim)) for i in range(head_dim // 2))


# Right answers written another way.
def _convert_with_a_row_list(weight, head_dim):
    rows = []
    for head in range(weight.shape[0] // head_dim):
        first = head * head_dim
        rows += [first + 2 * i for i in range(head_dim // 2)]
        rows += [first + 2 * i + 1 for i in range(head_dim // 2)]
    return weight[rows]


def apply_rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)                    # pair i is (x1[i], x2[i])
    rotated_half = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotated_half * sin


def _apply_rope_by_halves(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2, c, s = x[..., :half], x[..., half:], cos[..., :half], sin[..., :half]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


def _interleaved_rope(x, cos, sin):                 # pairs (2i, 2i+1): GPT-J's layout
    pairs = x.unflatten(-1, (-1, 2))
    half = x.shape[-1] // 2
    c, s = cos[..., :half, None], sin[..., :half, None]
    a, b = pairs[..., :1], pairs[..., 1:]
    return torch.cat((a * c - b * s, b * c + a * s), dim=-1).flatten(-2)


def _wrong_sign(x, cos, sin):                       # rotates the other way
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((x2, -x1), dim=-1) * sin


def _swapped_tables(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * sin + torch.cat((-x2, x1), dim=-1) * cos


def _no_negation(x, cos, sin):                      # a reflection, not a rotation
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((x2, x1), dim=-1) * sin


ALTERNATIVE = {
    "convert": [_convert_with_a_row_list,
                lambda w, d: w.unflatten(0, (-1, d // 2, 2)).transpose(1, 2).flatten(0, 2)],
    "ones_score": [lambda n, d, t: (2 * torch.cos(n / t ** (torch.arange(0, d, 2, dtype=torch.float64) / d))).sum()],
    "apply_rope": [_apply_rope_by_halves],
}


def _across_heads(weight, head_dim):   # treats all heads as one long head
    n = weight.shape[0]
    return weight[torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)])]


WRONG = {
    "convert": [lambda w, d: w,                                                          # no reordering
                _across_heads,
                lambda w, d: w.view(-1, d, w.shape[-1])[:, torch.cat([torch.arange(1, d, 2),
                                                                      torch.arange(0, d, 2)])].reshape(w.shape),  # odd first
                lambda w, d: w.view(-1, d, w.shape[-1]).flip(1).reshape(w.shape)],       # reversed
    "ones_score": [lambda n, d, t: ones_score(n, d, t) / 2,                             # one channel a pair
                   lambda n, d, t: sum(2 * math.cos(n * t ** (-i / d)) for i in range(d // 2)),   # i, not 2i
                   lambda n, d, t: sum(2 * math.sin(n * t ** (-2 * i / d)) for i in range(d // 2)),  # sin
                   lambda n, d, t: float(d)],                                               # "RoPE keeps lengths"
    "apply_rope": [_interleaved_rope, _wrong_sign, _swapped_tables, _no_negation],
}
