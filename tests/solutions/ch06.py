"""Right and wrong answers to the exercises of chapter 6."""


def ns_step(X, a, b, c):
    A = X @ X.T
    return a * X + (b * A + c * A @ A) @ X


def goes_to_muon(name, param):
    return param.ndim == 2 and name.startswith("layers.")


WRONG = {
    "ns_step": [lambda X, a, b, c: a * X + b * X @ X.T @ X,                     # cubic only
                lambda X, a, b, c: a * X + b * (X.T @ X) + c * (X.T @ X) @ (X.T @ X)],  # Gram, not X
    "goes_to_muon": [lambda name, p: p.ndim == 2,                                 # takes the embedding
                     lambda name, p: "proj" in name and "q_" not in name],        # leaves q_proj out
}
