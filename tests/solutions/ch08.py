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


def top_p_filter(logits, p):
    probs, order = torch.softmax(logits.float(), dim=-1).sort(dim=-1, descending=True)
    above = probs.cumsum(-1) - probs                 # probability of the tokens ranked above
    drop = torch.zeros_like(above, dtype=torch.bool).scatter(-1, order, above >= p)
    return logits.masked_fill(drop, float("-inf"))


def _top_p_row_by_row(logits, p):
    out = logits.clone()
    for row in out:
        probs = torch.softmax(row.float(), dim=-1)
        total = 0.0
        for i in probs.argsort(descending=True).tolist():
            if total >= p:
                row[i] = float("-inf")
            total += probs[i].item()
    return out


def _drops_the_crossing_token(logits, p):        # keeps only tokens whose running sum <= p
    probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
    drop = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, probs.cumsum(-1) > p)
    return logits.masked_fill(drop, float("-inf"))


def _unsorted(logits, p):                        # adds up in vocabulary order
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(probs.cumsum(-1) - probs >= p, float("-inf"))


def _not_scattered_back(logits, p):              # the decisions stay in sorted order
    probs, _ = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
    return logits.masked_fill(probs.cumsum(-1) - probs >= p, float("-inf"))


def _threshold(logits, p):                       # keeps tokens more probable than 1 - p
    return logits.masked_fill(torch.softmax(logits, dim=-1) < 1 - p, float("-inf"))


WRONG = {
    "top_k_keep": [_keeps_every_tie, _ties_by_higher_index,
                   lambda logits, k: torch.arange(len(logits)) < k],             # the first k ids
    "greedy_decode": [_first_token_twice, lambda model, ids, n: ids[0, -n:].tolist()],
    "top_p_filter": [_drops_the_crossing_token, _unsorted, _not_scattered_back, _threshold],
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


ALTERNATIVE = {"top_k_keep": [_top_k_by_key], "greedy_decode": [_greedy_decode_with_a_list],
               "top_p_filter": [_top_p_row_by_row]}
