"""Right answers to the exercises of chapter 1 (the tests prove each check accepts them)."""

import torch


def num_windows(n_tokens, seq_len, stride):
    return (n_tokens - seq_len - 1) // stride + 1


def make_pair(tokens, start, seq_len):
    return tokens[start:start + seq_len], tokens[start + 1:start + seq_len + 1]


def split(tokens, val_fraction, seq_len):
    n_val = round(len(tokens) * val_fraction)
    return tokens[:len(tokens) - n_val], tokens[len(tokens) - n_val:]


# Wrong answers that a learner might plausibly write; every check must reject them.
WRONG = {
    "num_windows": [lambda n, L, s: n - L,                      # forgets the stride
                    lambda n, L, s: (n - L) // s],              # off by one
    "make_pair": [lambda t, s, L: (t[s:s + L], t[s:s + L]),     # target not shifted
                  lambda t, s, L: (t[s:s + L], t[s + 1:s + L]),  # target one short
                  lambda t, s, L: t[s:s + L]],                  # not a pair
    "split": [lambda t, f, L: (t[round(len(t) * f):], t[:round(len(t) * f)]),  # holds out the head
              lambda t, f, L: (t[torch.randperm(len(t))[round(len(t) * f):]],   # random tokens
                               t[torch.randperm(len(t))[:round(len(t) * f)]]),
              lambda t, f, L: (t, t[len(t) - round(len(t) * f):])],             # overlapping
}


# Right answers written another way: the checks must not depend on one style.
def _num_windows_by_counting(n_tokens, seq_len, stride):
    return len(range(0, n_tokens - seq_len, stride))


def _split_with_torch_split(tokens, val_fraction, seq_len):
    n_val = int(len(tokens) * val_fraction + 0.5)
    train, val = torch.split(tokens, [len(tokens) - n_val, n_val])
    return train.clone(), val.clone()


ALTERNATIVE = {
    "num_windows": [_num_windows_by_counting],
    "make_pair": [lambda t, s, L: (lambda w: (w[:-1], w[1:]))(t[s:s + L + 1])],
    "split": [_split_with_torch_split],
}
