"""Right and wrong answers to the exercises of chapter 9c."""


def verdict(baseline, variant):
    if len(baseline) < 2 or len(variant) < 2:
        return "too few seeds"
    if max(variant) < min(baseline):
        return "better"
    if min(variant) > max(baseline):
        return "worse"
    return "within noise"


def parallel_block(x, attention, mlp, norm):
    h = norm(x)
    return x + attention(h) + mlp(h)


# Right answers written another way.
def _verdict_sorted(baseline, variant):
    if min(len(baseline), len(variant)) < 2:
        return "too few seeds"
    b, v = sorted(baseline), sorted(variant)
    return "better" if v[-1] < b[0] else "worse" if v[0] > b[-1] else "within noise"


def _parallel_block_sum(x, attention, mlp, norm):
    h = norm(x)
    return sum((x, attention(h), mlp(h)))


ALTERNATIVE = {"verdict": [_verdict_sorted], "parallel_block": [_parallel_block_sum]}


def _by_means(baseline, variant):              # a lower mean is not beyond the seeds
    if len(baseline) < 2 or len(variant) < 2:
        return "too few seeds"
    mean = lambda xs: sum(xs) / len(xs)        # noqa: E731
    return "better" if mean(variant) < mean(baseline) else "worse"


def _touching_counts(baseline, variant):       # ranges that touch are not apart
    if len(baseline) < 2 or len(variant) < 2:
        return "too few seeds"
    if max(variant) <= min(baseline):
        return "better"
    if min(variant) >= max(baseline):
        return "worse"
    return "within noise"


def _any_seed_count(baseline, variant):        # one seed is enough: no spread to compare
    if max(variant) < min(baseline):
        return "better"
    if min(variant) > max(baseline):
        return "worse"
    return "within noise"


def _sequential(x, attention, mlp, norm):      # the pre-norm block, with one norm
    x = x + attention(norm(x))
    return x + mlp(norm(x))


WRONG = {
    "verdict": [_by_means, _touching_counts, _any_seed_count,
                lambda b, v: {"better": "worse", "worse": "better"}.get(verdict(b, v), verdict(b, v))],
    "parallel_block": [_sequential,
                       lambda x, a, m, n: a(n(x)) + m(n(x)),            # no residual
                       lambda x, a, m, n: x + a(n(x)) + m(x),           # the MLP reads the raw stream
                       lambda x, a, m, n: n(x + a(x) + m(x)),           # the stream normed
                       lambda x, a, m, n: x + a(n(x)) + m(a(n(x)))],    # the MLP reads attention
}
