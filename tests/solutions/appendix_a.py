"""Right and wrong answers to the exercises of appendix A."""

import torch
import torch.nn.functional as F


def ce_grad(logits, target):
    return torch.softmax(logits, 0) - F.one_hot(torch.tensor(target), len(logits))


def chunked_loss(hidden, weight, targets, chunk_size):
    total = 0.0
    for start in range(0, len(hidden), chunk_size):
        logits = hidden[start:start + chunk_size] @ weight.T
        total = total + F.cross_entropy(logits, targets[start:start + chunk_size], reduction="sum")
    return total / len(hidden)


def _mean_of_chunk_means(hidden, weight, targets, chunk_size):   # wrong when the last chunk is short
    parts = [F.cross_entropy(hidden[i:i + chunk_size] @ weight.T, targets[i:i + chunk_size])
             for i in range(0, len(hidden), chunk_size)]
    return torch.stack(parts).mean()


def _all_logits_at_once(hidden, weight, targets, chunk_size):    # right number, no chunking
    return F.cross_entropy(hidden @ weight.T, targets)


WRONG = {
    "ce_grad": [lambda z, t: torch.softmax(z, 0),                                  # forgets the one-hot
                lambda z, t: F.one_hot(torch.tensor(t), len(z)) - torch.softmax(z, 0)],  # sign
    "chunked_loss": [_mean_of_chunk_means, _all_logits_at_once],
}


def _ce_grad_by_autograd(logits, target):
    z = logits.detach().clone().requires_grad_()
    F.cross_entropy(z[None], torch.tensor([target])).backward()
    return z.grad


def _chunked_loss_with_logsumexp(hidden, weight, targets, chunk_size):
    total = hidden.new_zeros(())
    for chunk, target in zip(hidden.split(chunk_size), targets.split(chunk_size)):
        logits = chunk @ weight.T
        total = total + (logits.logsumexp(-1) - logits.gather(1, target[:, None])[:, 0]).sum()
    return total / len(targets)


ALTERNATIVE = {"ce_grad": [_ce_grad_by_autograd], "chunked_loss": [_chunked_loss_with_logsumexp]}
