"""Right and wrong answers to the exercises of chapter 9."""

import math


def early_stop(eval_steps, val_losses, patience):
    best, since = 0, 0
    for i in range(1, len(val_losses)):
        if val_losses[i] < val_losses[best]:
            best, since = i, 0
        else:
            since += 1
            if since == patience:
                return eval_steps[i], eval_steps[best]
    return eval_steps[-1], eval_steps[best]


def same_bits_loss(loss, chars_per_token, other_chars_per_token):
    # bits per character: loss / ln 2 / chars_per_token, to be equal for both tokenizers
    return loss / chars_per_token * other_chars_per_token


def _ties_count_as_improvement(eval_steps, val_losses, patience):
    best, since = 0, 0
    for i in range(1, len(val_losses)):
        if val_losses[i] <= val_losses[best]:
            best, since = i, 0
        else:
            since += 1
            if since == patience:
                return eval_steps[i], eval_steps[best]
    return eval_steps[-1], eval_steps[best]


def _compares_with_the_previous_not_the_best(eval_steps, val_losses, patience):
    since = 0
    best = min(range(len(val_losses)), key=val_losses.__getitem__)
    for i in range(1, len(val_losses)):
        since = 0 if val_losses[i] < val_losses[i - 1] else since + 1
        if since == patience:
            return eval_steps[i], eval_steps[best]
    return eval_steps[-1], eval_steps[best]


WRONG = {
    "early_stop": [_ties_count_as_improvement, _compares_with_the_previous_not_the_best,
                   lambda s, v, p: (s[-1], s[v.index(min(v))])],
    "same_bits_loss": [lambda loss, cpt, other: loss * cpt / other,                # the ratio upside down
                       lambda loss, cpt, other: loss / math.log(2) / cpt,          # bits per character
                       lambda loss, cpt, other: loss / math.log(2) * other / cpt,  # bits per token
                       lambda loss, cpt, other: loss],                             # "a loss is a loss"
}


def _early_stop_with_enumerate(eval_steps, val_losses, patience):
    best_loss, best_step, waited = float("inf"), None, 0
    for step, loss in zip(eval_steps, val_losses):
        if loss < best_loss:
            best_loss, best_step, waited = loss, step, 0
        else:
            waited += 1
            if waited >= patience:
                return step, best_step
    return eval_steps[-1], best_step


ALTERNATIVE = {
    "early_stop": [_early_stop_with_enumerate],
    "same_bits_loss": [lambda loss, cpt, other: math.log(2) * (loss / math.log(2) / cpt) * other],
}
