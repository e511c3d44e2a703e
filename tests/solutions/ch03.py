"""Right and wrong answers to the exercises of chapter 3."""

import torch


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def angle(pair, position, head_dim, theta):
    return position * theta ** (-2 * pair / head_dim)


WRONG = {
    "rotate_half": [lambda x: torch.cat(x.chunk(2, -1)[::-1], -1),                 # forgets the sign
                    lambda x: torch.stack((-x[..., 1::2], x[..., ::2]), -1).flatten(-2)],  # interleaved layout
    "angle": [lambda i, p, d, t: p * t ** (-i / d),                                 # i instead of 2i
              lambda i, p, d, t: t ** (-2 * i / d)],                                # forgets the position
}
