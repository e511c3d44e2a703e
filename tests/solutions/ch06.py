"""Right and wrong answers to the exercises of chapter 6."""

import torch

A, B, C = 3.4445, -4.7750, 2.0315   # Newton–Schulz's coefficients (qwenlib.muon.NS_COEFFICIENTS)


def predict(s, steps):
    x = s / s.norm()             # dividing G by its Frobenius norm, sqrt(sum of s^2), scales every s
    for _ in range(steps):
        x = A * x + B * x**3 + C * x**5
    return x


def goes_to_muon(name, param):
    return param.ndim == 2 and name.startswith("layers.")


# Right answers written another way.
def _predict_with_floats(s, steps):
    frobenius = sum(float(v) ** 2 for v in s) ** 0.5
    out = []
    for v in s:
        x = float(v) / frobenius
        for _ in range(steps):
            x = x * (A + x * x * (B + C * x * x))
        out.append(x)
    return out


ALTERNATIVE = {
    "predict": [_predict_with_floats],
    "goes_to_muon": [lambda name, p: len(p.shape) == 2 and ".mlp." in f".{name}" or
                     len(p.shape) == 2 and ".self_attn." in f".{name}"],
}


def _quintic_steps(x, steps):
    for _ in range(steps):
        x = A * x + B * x**3 + C * x**5
    return x


def _spectral_norm(s, steps):     # divides by the largest singular value, not the Frobenius norm
    return _quintic_steps(s / s.max(), steps)


def _unnormalised(s, steps):      # forgets the normalisation: large values blow up
    return _quintic_steps(s.clone(), steps)


WRONG = {
    "predict": [_spectral_norm,
                lambda s, steps: predict(s, 1) if steps else s / s.norm(),   # one step only
                lambda s, steps: torch.ones_like(s),                          # "all become 1"
                _unnormalised],
    "goes_to_muon": [lambda name, p: p.ndim == 2,                                 # takes the embedding
                     lambda name, p: "proj" in name and "q_" not in name],        # leaves q_proj out
}
