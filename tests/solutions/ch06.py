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


def newton_schulz(G, steps=5):
    a, b, c = A, B, C
    X = G.float()
    tall = X.size(0) > X.size(1)
    if tall:                                   # work on the short side: X @ X.T is small
        X = X.T
    X = X / X.norm().clamp(min=1e-7)           # every singular value now at most 1
    for _ in range(steps):
        S = X @ X.T
        X = a * X + (b * S + c * S @ S) @ X
    return X.T if tall else X


def _newton_schulz_nested(G, steps=5):         # the polynomial in Horner form, no flag
    if G.shape[0] > G.shape[1]:
        return _newton_schulz_nested(G.T, steps).T
    X = G.float() / torch.linalg.matrix_norm(G.float()).clamp(min=1e-7)
    for _ in range(steps):
        S = X @ X.T
        X = A * X + B * (S @ X) + C * (S @ (S @ X))
    return X


def _ns_no_transpose(G, steps=5):              # right values, but X @ X.T is long x long
    X = G.float() / G.float().norm().clamp(min=1e-7)
    for _ in range(steps):
        S = X @ X.T
        X = A * X + (B * S + C * S @ S) @ X
    return X


def _ns_gram_on_the_long_side(G, steps=5):     # X.T @ X: n x n for a wide matrix
    X = G.float() / G.float().norm().clamp(min=1e-7)
    for _ in range(steps):
        S = X.T @ X
        X = A * X + X @ (B * S + C * S @ S)
    return X


def _ns_spectral_norm(G, steps=5):             # largest singular value, not Frobenius
    X = G.float()
    X = X / torch.linalg.matrix_norm(X, 2).clamp(min=1e-7)
    return _iterate(X, steps)


def _iterate(X, steps):
    tall = X.size(0) > X.size(1)
    X = X.T if tall else X
    for _ in range(steps):
        S = X @ X.T
        X = A * X + (B * S + C * S @ S) @ X
    return X.T if tall else X


def _ns_no_eps(G, steps=5):                    # a zero gradient gives 0 / 0
    X = G.float()
    return _iterate(X / X.norm(), steps)


def _ns_cubic(G, steps=5):                     # the classic cubic, 1.5 x - 0.5 x^3
    X = G.float()
    tall = X.size(0) > X.size(1)
    X = X.T if tall else X
    X = X / X.norm().clamp(min=1e-7)
    for _ in range(steps):
        X = 1.5 * X - 0.5 * (X @ X.T) @ X
    return X.T if tall else X


def _ns_not_transposed_back(G, steps=5):
    X = G.float()
    X = X.T if X.size(0) > X.size(1) else X
    return _iterate(X / X.norm().clamp(min=1e-7), steps)


def _ns_unnormalised(G, steps=5):
    return _iterate(G.float(), steps)


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
    "newton_schulz": [_newton_schulz_nested],
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
    "newton_schulz": [_ns_no_transpose, _ns_gram_on_the_long_side, _ns_spectral_norm, _ns_no_eps,
                      _ns_cubic, _ns_not_transposed_back, _ns_unnormalised],
}


# Exercise 6.5: NorMuon's step
def normalize_neurons(update, state, beta2):
    u = update.float()
    v = state.setdefault("v", torch.zeros(u.size(0), 1, device=u.device))  # one per row (neuron)
    v.mul_(beta2).add_((1 - beta2) * u.square().mean(dim=1, keepdim=True))
    out = u / (v.sqrt() + 1e-8)
    return out * (u.norm() / out.norm())


def _normalize_neurons_bias_corrected(update, state, beta2):   # Adam's correction: a common
    u = update.float()                                           # factor, which the rescale undoes
    t = state["t"] = state.get("t", 0) + 1
    v = state["v"] = beta2 * state.get("v", 0) + (1 - beta2) * (u * u).mean(1, keepdim=True)
    out = u / ((v / (1 - beta2**t)).sqrt() + 1e-8)
    return out * (u.norm() / out.norm())


def _nn_not_rescaled(update, state, beta2):                      # the rows' sizes, not the norm
    u = update.float()
    v = state.setdefault("v", torch.zeros(u.size(0), 1))
    v.lerp_(u.square().mean(1, keepdim=True), 1 - beta2)
    return u / (v.sqrt() + 1e-8)


def _nn_per_column(update, state, beta2):                        # one number per input, not neuron
    u = update.float()
    v = state.setdefault("v", torch.zeros(1, u.size(1)))
    v.lerp_(u.square().mean(0, keepdim=True), 1 - beta2)
    out = u / (v.sqrt() + 1e-8)
    return out * (u.norm() / out.norm())


def _nn_no_memory(update, state, beta2):                         # this step's rows only
    u = update.float()
    out = u / (((1 - beta2) * u.square().mean(1, keepdim=True)).sqrt() + 1e-8)
    return out * (u.norm() / out.norm())


def _nn_betas_swapped(update, state, beta2):                     # v <- (1 - beta2) v + beta2 ...
    u = update.float()
    v = state.setdefault("v", torch.zeros(u.size(0), 1))
    v.lerp_(u.square().mean(1, keepdim=True), beta2)
    out = u / (v.sqrt() + 1e-8)
    return out * (u.norm() / out.norm())


def _nn_no_root(update, state, beta2):                           # divides by v, not its root
    u = update.float()
    v = state.setdefault("v", torch.zeros(u.size(0), 1))
    v.lerp_(u.square().mean(1, keepdim=True), 1 - beta2)
    out = u / (v + 1e-8)
    return out * (u.norm() / out.norm())


ALTERNATIVE["normalize_neurons"] = [_normalize_neurons_bias_corrected]
WRONG["normalize_neurons"] = [_nn_not_rescaled, _nn_per_column, _nn_no_memory, _nn_betas_swapped,
                              _nn_no_root]
