"""Right and wrong answers to the exercises of chapter 7."""

import math

import torch.nn.functional as F


def schedule(step, max_steps, warmup_ratio, min_lr_ratio):
    warmup = int(warmup_ratio * max_steps)
    if step < warmup:                                 # lr_scale's warmup, unchanged
        return (step + 1) / warmup
    decay_steps = max(1, max_steps - 1 - warmup)      # from the first update after warmup
    done = min(1.0, (step - warmup) / decay_steps)    # 0 there, 1 at update max_steps - 1
    return min_lr_ratio + (1 - min_lr_ratio) * (1 - done)


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


# Right answers written another way.
def _schedule_by_interpolation(step, max_steps, warmup_ratio, min_lr_ratio):
    warmup = int(warmup_ratio * max_steps)
    if step < warmup:
        return (step + 1) / warmup
    last = max(warmup + 1, max_steps - 1)
    fraction = min(step, last) - warmup
    return 1 + (min_lr_ratio - 1) * fraction / (last - warmup)


def _accumulate_with_a_sum(model, micro_batches, optimizer):
    optimizer.zero_grad()
    total = sum(F.mse_loss(model(x), y) * len(x) for x, y in micro_batches)
    (total / sum(len(x) for x, _ in micro_batches)).backward()
    optimizer.step()


ALTERNATIVE = {"schedule": [_schedule_by_interpolation], "train_step": [_accumulate_with_a_sum]}


def _linear_to_zero(step, max_steps, warmup_ratio, min_lr_ratio):   # forgets the floor
    return schedule(step, max_steps, warmup_ratio, 0.0)


def _ends_at_max_steps(step, max_steps, warmup_ratio, min_lr_ratio):   # min_lr one update late
    warmup = int(warmup_ratio * max_steps)
    if step < warmup:
        return (step + 1) / warmup
    return 1 - (1 - min_lr_ratio) * min(1.0, (step - warmup) / max(1, max_steps - warmup))


def _cosine(step, max_steps, warmup_ratio, min_lr_ratio):          # lr_scale itself
    warmup = int(warmup_ratio * max_steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - 1 - warmup))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


WRONG = {
    "schedule": [_linear_to_zero, _ends_at_max_steps, _cosine,
                 lambda s, n, w, m: min(1.0, (s + 1) / max(1, int(w * n)))],      # warmup only
    "train_step": [_forgets_to_divide, _steps_every_micro_batch],
}
