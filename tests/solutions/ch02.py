"""Right and wrong answers to the exercises of chapter 2."""

import torch


def rms_norm(x, weight, eps=1e-6):
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def layer_norm_via_rms(x, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps)


WRONG = {
    "rms_norm": [lambda x, w, eps=1e-6: w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps),  # no upcast
                 lambda x, w, eps=1e-6: (w * x.float() / x.float().norm(dim=-1, keepdim=True)),   # norm, not RMS
                 lambda x, w, eps=1e-6: rms_norm(x, w, eps).float()],                               # wrong dtype
    "layer_norm_via_rms": [lambda x, eps=1e-5: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps),  # not centred
                           lambda x, eps=1e-5: x - x.mean(-1, keepdim=True)],                          # not scaled
}
