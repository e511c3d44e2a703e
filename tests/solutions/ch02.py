"""Right and wrong answers to the exercises of chapter 2."""

import torch


def fold(gain, weight):
    return weight * gain          # weight is (out, in): the gain scales input channel j, column j


def layer_norm_via_rms(x, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps)


def rms_norm(x, weight, eps=1e-6):
    dtype = x.dtype
    x = x.float()                                          # statistics in fp32
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)                            # back to x's dtype, then the gain


def _with_functional(x, weight, eps=1e-6):
    normed = torch.nn.functional.rms_norm(x.float(), x.shape[-1:], eps=eps)
    return normed.to(x.dtype) * weight


def _no_upcast(x, weight, eps=1e-6):                       # 300 ** 2 overflows fp16
    return weight * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _eps_outside(x, weight, eps=1e-6):                     # x / (rms + eps)
    xf = x.float()
    return weight * (xf / (xf.pow(2).mean(-1, keepdim=True).sqrt() + eps)).to(x.dtype)


def _no_gain(x, weight, eps=1e-6):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _layer_norm(x, weight, eps=1e-6):                      # centred: LayerNorm, not RMSNorm
    xf = x.float()
    xf = xf - xf.mean(-1, keepdim=True)
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _l2_norm(x, weight, eps=1e-6):                         # sum, not mean: sqrt(d) too small
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + eps)).to(x.dtype)


def _fp32_out(x, weight, eps=1e-6):                        # never cast back
    xf = x.float()
    return weight.float() * xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)


WRONG = {
    "fold": [lambda g, w: w * g[:, None] if w.shape[0] == len(g) else w,     # scales the outputs
             lambda g, w: w / g,                                            # divides
             lambda g, w: w * g.mean()],                                    # one scale for all
    "layer_norm_via_rms": [lambda x, eps=1e-5: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps),  # not centred
                           lambda x, eps=1e-5: x - x.mean(-1, keepdim=True)],                          # not scaled
    "rms_norm": [_no_upcast, _eps_outside, _no_gain, _layer_norm, _l2_norm, _fp32_out],
}


ALTERNATIVE = {
    "fold": [lambda g, w: w @ torch.diag(g), lambda g, w: torch.einsum("oi,i->oi", w, g)],
    "layer_norm_via_rms": [lambda x, eps=1e-5: torch.nn.functional.layer_norm(x, x.shape[-1:], eps=eps)],
    "rms_norm": [_with_functional],
}
