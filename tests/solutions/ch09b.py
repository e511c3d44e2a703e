"""Right and wrong answers to the exercises of chapter 9b."""


def best_is_inside(results):
    rates = sorted(results)
    best = min(results, key=results.get)
    return rates[0] < best < rates[-1]


def crossing(steps, losses, level):
    if losses[0] <= level:
        return steps[0]
    for i in range(1, len(steps)):
        if losses[i] <= level:
            before, after = losses[i - 1], losses[i]
            return steps[i - 1] + (steps[i] - steps[i - 1]) * (before - level) / (before - after)
    return None


# Right answers written another way.
def _best_is_inside_by_position(results):
    ordered = [results[rate] for rate in sorted(results)]
    position = ordered.index(min(ordered))
    return 0 < position < len(ordered) - 1


def _crossing_with_zip(steps, losses, level):
    previous = None
    for step, loss in zip(steps, losses):
        if loss <= level:
            if previous is None:
                return float(step)
            s0, l0 = previous
            return s0 + (l0 - level) / (l0 - loss) * (step - s0)
        previous = (step, loss)
    return None


ALTERNATIVE = {"best_is_inside": [_best_is_inside_by_position], "crossing": [_crossing_with_zip]}


def _dict_order(results):                      # the dict's order is not the rates' order
    keys = list(results)
    best = keys.index(min(results, key=results.get))
    return 0 < best < len(keys) - 1


def _last_crossing(steps, losses, level):      # the last crossing, not the first
    found = None
    for i in range(1, len(steps)):
        if losses[i] <= level < losses[i - 1]:
            found = steps[i - 1] + (steps[i] - steps[i - 1]) * (losses[i - 1] - level) / (losses[i - 1] - losses[i])
    return found if found is not None or losses[0] > level else steps[0]


WRONG = {
    "best_is_inside": [_dict_order,
                       lambda r: max(r, key=r.get) not in (min(r), max(r)),   # the worst, not the best
                       lambda r: len(r) >= 3],
    "crossing": [lambda s, l, v: next((a for a, b in zip(s, l) if b <= v), None),   # no interpolation
                 _last_crossing,
                 lambda s, l, v: crossing(s, l, v) or 0.0],                        # 0 for "never"
}
