"""Right and wrong answers to the exercises of chapter 8."""

import torch


def top_p_keep(probs, p):
    order = torch.argsort(probs, descending=True)
    sorted_probs = probs[order]
    before = sorted_probs.cumsum(0) - sorted_probs
    keep = torch.zeros_like(probs, dtype=torch.bool)
    keep[order] = before < p
    return keep


def greedy_decode(model, ids, n):
    new = []
    with torch.no_grad():
        for _ in range(n):
            token = model(ids)[0, -1].argmax()
            new.append(int(token))
            ids = torch.cat([ids, token.view(1, 1)], dim=1)
    return new


def _keeps_above_p(probs, p):  # thresholds each probability instead of the cumulative mass
    return probs >= p


def _cumulative_without_sorting(probs, p):
    return (probs.cumsum(0) - probs) < p


def _first_token_twice(model, ids, n):  # never appends: the same token n times
    with torch.no_grad():
        return [int(model(ids)[0, -1].argmax())] * n


WRONG = {
    "top_p_keep": [_keeps_above_p, _cumulative_without_sorting],
    "greedy_decode": [_first_token_twice, lambda model, ids, n: ids[0, -n:].tolist()],
}
