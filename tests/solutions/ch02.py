"""Right and wrong answers to the exercises of chapter 2."""

import torch


def fold(gain, weight):
    return weight * gain          # weight is (out, in): the gain scales input channel j, column j


def layer_norm_via_rms(x, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps)


WRONG = {
    "fold": [lambda g, w: w * g[:, None] if w.shape[0] == len(g) else w,     # scales the outputs
             lambda g, w: w / g,                                            # divides
             lambda g, w: w * g.mean()],                                    # one scale for all
    "layer_norm_via_rms": [lambda x, eps=1e-5: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps),  # not centred
                           lambda x, eps=1e-5: x - x.mean(-1, keepdim=True)],                          # not scaled
}


ALTERNATIVE = {
    "fold": [lambda g, w: w @ torch.diag(g), lambda g, w: torch.einsum("oi,i->oi", w, g)],
    "layer_norm_via_rms": [lambda x, eps=1e-5: torch.nn.functional.layer_norm(x, x.shape[-1:], eps=eps)],
}
