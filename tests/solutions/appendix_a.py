"""Right and wrong answers to the exercises of appendix A."""

import torch
import torch.nn.functional as F


def chunked_loss(hidden, weight, targets, chunk_size):
    total = 0.0
    for start in range(0, len(hidden), chunk_size):
        logits = hidden[start:start + chunk_size] @ weight.T
        total = total + F.cross_entropy(logits, targets[start:start + chunk_size], reduction="sum")
    return total / len(hidden)


def chunked_backward(hidden, weight, targets, chunk_size):
    n = len(hidden)
    grad_hidden, grad_weight = torch.empty_like(hidden), torch.zeros_like(weight)
    for start in range(0, n, chunk_size):
        h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        G = torch.softmax(h @ weight.T, dim=1)                  # one chunk of logits, (rows, V)
        G[torch.arange(len(t)), t] -= 1                         # minus one-hot
        G /= n                                                  # the mean over all n rows
        grad_hidden[start:start + chunk_size] = G @ weight
        grad_weight += G.T @ h                                  # every chunk adds to W's gradient
    return grad_hidden, grad_weight


def _chunked_backward_with_split(hidden, weight, targets, chunk_size):
    grads, grad_weight = [], 0
    for h, t in zip(hidden.split(chunk_size), targets.split(chunk_size)):
        z = h @ weight.T
        G = (z - z.logsumexp(1, keepdim=True)).exp() - F.one_hot(t, len(weight)).to(z.dtype)
        grads.append(G @ weight / len(hidden))
        grad_weight = grad_weight + G.T @ h / len(hidden)
    return torch.cat(grads), grad_weight


def _backward_chunk_mean(hidden, weight, targets, chunk_size):     # divides by the chunk's rows
    gh, gw = torch.empty_like(hidden), torch.zeros_like(weight)
    for s in range(0, len(hidden), chunk_size):
        h, t = hidden[s:s + chunk_size], targets[s:s + chunk_size]
        G = torch.softmax(h @ weight.T, 1) - F.one_hot(t, len(weight))
        G = G / len(h)
        gh[s:s + chunk_size], gw = G @ weight, gw + G.T @ h
    return gh, gw


def _backward_sum(hidden, weight, targets, chunk_size):            # forgets the mean's 1/n
    gh, gw = chunked_backward(hidden, weight, targets, chunk_size)
    return gh * len(hidden), gw * len(hidden)


def _backward_last_chunk_only(hidden, weight, targets, chunk_size):  # = instead of += for W
    gh, gw = torch.empty_like(hidden), None
    for s in range(0, len(hidden), chunk_size):
        h, t = hidden[s:s + chunk_size], targets[s:s + chunk_size]
        G = (torch.softmax(h @ weight.T, 1) - F.one_hot(t, len(weight))) / len(hidden)
        gh[s:s + chunk_size], gw = G @ weight, G.T @ h
    return gh, gw


def _backward_plus_one_hot(hidden, weight, targets, chunk_size):     # the one-hot's sign
    gh, gw = torch.empty_like(hidden), torch.zeros_like(weight)
    for s in range(0, len(hidden), chunk_size):
        h, t = hidden[s:s + chunk_size], targets[s:s + chunk_size]
        G = (torch.softmax(h @ weight.T, 1) + F.one_hot(t, len(weight))) / len(hidden)
        gh[s:s + chunk_size], gw = G @ weight, gw + G.T @ h
    return gh, gw


def _backward_all_logits(hidden, weight, targets, chunk_size):       # right, but no chunking
    G = (torch.softmax(hidden @ weight.T, 1) - F.one_hot(targets, len(weight))) / len(hidden)
    return G @ weight, G.T @ hidden


def _mean_of_chunk_means(hidden, weight, targets, chunk_size):   # wrong when the last chunk is short
    parts = [F.cross_entropy(hidden[i:i + chunk_size] @ weight.T, targets[i:i + chunk_size])
             for i in range(0, len(hidden), chunk_size)]
    return torch.stack(parts).mean()


def _all_logits_at_once(hidden, weight, targets, chunk_size):    # right number, no chunking
    return F.cross_entropy(hidden @ weight.T, targets)


WRONG = {
    "chunked_backward": [_backward_chunk_mean, _backward_sum, _backward_last_chunk_only,
                         _backward_plus_one_hot, _backward_all_logits],
    "chunked_loss": [_mean_of_chunk_means, _all_logits_at_once],
}


def _chunked_loss_with_logsumexp(hidden, weight, targets, chunk_size):
    total = hidden.new_zeros(())
    for chunk, target in zip(hidden.split(chunk_size), targets.split(chunk_size)):
        logits = chunk @ weight.T
        total = total + (logits.logsumexp(-1) - logits.gather(1, target[:, None])[:, 0]).sum()
    return total / len(targets)


ALTERNATIVE = {"chunked_backward": [_chunked_backward_with_split],
               "chunked_loss": [_chunked_loss_with_logsumexp]}
