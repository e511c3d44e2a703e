"""Right and wrong answers to the exercises of chapter 8."""

import torch


def top_k_keep(logits, k):
    # a stable sort keeps equal logits in index order, so the lower id comes first
    order = torch.sort(logits, descending=True, stable=True).indices
    keep = torch.zeros(len(logits), dtype=torch.bool)
    keep[order[:k]] = True
    return keep


def greedy_decode(model, ids, n):
    new = []
    with torch.no_grad():
        for _ in range(n):
            token = model(ids)[0, -1].argmax()
            new.append(int(token))
            ids = torch.cat([ids, token.view(1, 1)], dim=1)
    return new


def _keeps_every_tie(logits, k):          # what filter_logits does: ties with the k-th all stay
    return logits >= torch.topk(logits, k).values[-1]


def _ties_by_higher_index(logits, k):
    order = sorted(range(len(logits)), key=lambda i: (-float(logits[i]), -i))
    keep = torch.zeros(len(logits), dtype=torch.bool)
    keep[order[:k]] = True
    return keep


def _first_token_twice(model, ids, n):  # never appends: the same token n times
    with torch.no_grad():
        return [int(model(ids)[0, -1].argmax())] * n


WRONG = {
    "top_k_keep": [_keeps_every_tie, _ties_by_higher_index,
                   lambda logits, k: torch.arange(len(logits)) < k],             # the first k ids
    "greedy_decode": [_first_token_twice, lambda model, ids, n: ids[0, -n:].tolist()],
}


def _top_k_by_key(logits, k):
    ranked = sorted(range(len(logits)), key=lambda i: (-logits[i].item(), i))[:k]
    return torch.tensor([i in ranked for i in range(len(logits))])


def _greedy_decode_with_a_list(model, ids, n):
    tokens = ids[0].tolist()
    with torch.no_grad():
        for _ in range(n):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[-n:] if n else []


ALTERNATIVE = {"top_k_keep": [_top_k_by_key], "greedy_decode": [_greedy_decode_with_a_list]}
