"""Right and wrong answers to the exercises of chapter 3."""

import torch


def convert(weight, head_dim):
    """Interleaved pairs (2i, 2i+1) -> rotate-half pairs (i, i + head_dim/2), head by head."""
    heads = weight.view(-1, head_dim, weight.shape[-1])                # (heads, head_dim, d_model)
    order = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    return heads[:, order].reshape(weight.shape)


def angle(pair, position, head_dim, theta):
    return position * theta ** (-2 * pair / head_dim)


# Right answers written another way.
def _convert_with_a_row_list(weight, head_dim):
    rows = []
    for head in range(weight.shape[0] // head_dim):
        first = head * head_dim
        rows += [first + 2 * i for i in range(head_dim // 2)]
        rows += [first + 2 * i + 1 for i in range(head_dim // 2)]
    return weight[rows]


ALTERNATIVE = {
    "convert": [_convert_with_a_row_list,
                lambda w, d: w.unflatten(0, (-1, d // 2, 2)).transpose(1, 2).flatten(0, 2)],
    "angle": [lambda i, p, d, t: p / t ** (2 * i / d)],
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
    "angle": [lambda i, p, d, t: p * t ** (-i / d),                                 # i instead of 2i
              lambda i, p, d, t: t ** (-2 * i / d)],                                # forgets the position
}
