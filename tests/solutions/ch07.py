"""Right and wrong answers to the exercises of chapter 7."""

import math

import torch.nn.functional as F


def schedule(step, max_steps, warmup_ratio, min_lr_ratio):
    warmup = int(warmup_ratio * max_steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - 1 - warmup))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train_step(model, micro_batches, optimizer):
    optimizer.zero_grad()
    for x, y in micro_batches:
        (F.mse_loss(model(x), y) / len(micro_batches)).backward()
    optimizer.step()


def _forgets_to_divide(model, micro_batches, optimizer):
    optimizer.zero_grad()
    for x, y in micro_batches:
        F.mse_loss(model(x), y).backward()
    optimizer.step()


def _steps_every_micro_batch(model, micro_batches, optimizer):
    for x, y in micro_batches:
        optimizer.zero_grad()
        (F.mse_loss(model(x), y) / len(micro_batches)).backward()
        optimizer.step()


WRONG = {
    "schedule": [lambda s, n, w, m: 0.5 * (1 + math.cos(math.pi * s / n)),       # no warmup, no floor
                 lambda s, n, w, m: min(1.0, (s + 1) / max(1, int(w * n)))],      # warmup only
    "train_step": [_forgets_to_divide, _steps_every_micro_batch],
}
