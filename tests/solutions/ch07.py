"""Right and wrong answers to the exercises of chapter 7."""

import math

import torch

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


def update(model, micro_batches, optimizers, max_norm):
    total = 0.0
    for x, y in micro_batches:
        loss = model.loss(x, y)
        (loss / len(micro_batches)).backward()        # the gradient of the mean loss
        total += loss.item() / len(micro_batches)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)   # once, over everything
    for opt in optimizers:
        opt.step()
        opt.zero_grad()
    return total, norm.item()


def _update_zeroing_first(model, micro_batches, optimizers, max_norm):
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    losses = [model.loss(x, y) for x, y in micro_batches]      # one graph, one backward
    loss = torch.stack(losses).mean()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters()], max_norm)
    for opt in optimizers:
        opt.step()
    return loss.detach(), norm


def _update_no_division(model, micro_batches, optimizers, max_norm):   # k times the gradient
    losses = []
    for x, y in micro_batches:
        loss = model.loss(x, y)
        loss.backward()
        losses.append(loss.item())
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    for opt in optimizers:
        opt.step()
        opt.zero_grad()
    return sum(losses) / len(losses), norm.item()


def _update_clip_each_micro_batch(model, micro_batches, optimizers, max_norm):
    total, norm = 0.0, 0.0
    for x, y in micro_batches:
        loss = model.loss(x, y)
        (loss / len(micro_batches)).backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
        total += loss.item() / len(micro_batches)
    for opt in optimizers:
        opt.step()
        opt.zero_grad()
    return total, norm


def _update_clip_after_step(model, micro_batches, optimizers, max_norm):
    total = 0.0
    for x, y in micro_batches:
        loss = model.loss(x, y)
        (loss / len(micro_batches)).backward()
        total += loss.item() / len(micro_batches)
    for opt in optimizers:
        opt.step()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    for opt in optimizers:
        opt.zero_grad()
    return total, norm.item()


def _update_norm_after_clip(model, micro_batches, optimizers, max_norm):
    total, _ = 0.0, None
    for x, y in micro_batches:
        loss = model.loss(x, y)
        (loss / len(micro_batches)).backward()
        total += loss.item() / len(micro_batches)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    for opt in optimizers:
        opt.step()
        opt.zero_grad()
    return total, norm.item()


def _update_clip_per_optimizer(model, micro_batches, optimizers, max_norm):   # one norm per optimizer
    total = 0.0
    for x, y in micro_batches:
        loss = model.loss(x, y)
        (loss / len(micro_batches)).backward()
        total += loss.item() / len(micro_batches)
    norms = [torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], max_norm)
             for opt in optimizers]
    for opt in optimizers:
        opt.step()
        opt.zero_grad()
    return total, torch.stack(norms).norm().item()      # even the reported norm is right


def _update_first_optimizer_only(model, micro_batches, optimizers, max_norm):
    return update(model, micro_batches, optimizers[:1], max_norm)


def _update_never_zeroed(model, micro_batches, optimizers, max_norm):   # last update's gradients stay
    total = 0.0
    for x, y in micro_batches:
        loss = model.loss(x, y)
        (loss / len(micro_batches)).backward()
        total += loss.item() / len(micro_batches)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    for opt in optimizers:
        opt.step()
    return total, norm.item()


def _update_last_loss(model, micro_batches, optimizers, max_norm):      # reports the last micro-batch
    for x, y in micro_batches:
        loss = model.loss(x, y)
        (loss / len(micro_batches)).backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    for opt in optimizers:
        opt.step()
        opt.zero_grad()
    return loss.item(), norm.item()


ALTERNATIVE = {"schedule": [_schedule_by_interpolation], "train_step": [_accumulate_with_a_sum],
               "update": [_update_zeroing_first]}


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
    "update": [_update_no_division, _update_clip_each_micro_batch, _update_clip_after_step,
               _update_norm_after_clip, _update_clip_per_optimizer, _update_first_optimizer_only,
               _update_never_zeroed, _update_last_loss],
}
