"""Right and wrong answers to the exercises of engineering notebook B5 (settings)."""

import math
import numbers


def finite_number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _with_numbers(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and value - value == 0)                      # inf - inf and nan - nan are nan


def heads_problem(d_model, n_heads, n_kv_heads):
    if d_model % n_heads:
        return f"d_model={d_model} is not divisible by n_heads={n_heads}"
    if d_model // n_heads % 2:
        return f"head_dim={d_model // n_heads} is odd: RoPE rotates pairs of channels"
    if n_heads % n_kv_heads:
        return f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}"
    return None


def _all_at_once(d_model, n_heads, n_kv_heads):
    head_dim, rest = divmod(d_model, n_heads)
    broken = rest or head_dim % 2 or n_heads % n_kv_heads
    return "the heads do not split evenly" if broken else None


ALTERNATIVE = {"finite_number": [_with_numbers], "heads_problem": [_all_at_once]}


def _bool_passes(value):                  # True is an int: n_layers=True would be one layer
    return isinstance(value, (int, float)) and math.isfinite(value)


def _nan_passes(value):                   # nan and inf are floats
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _inf_passes(value):                   # NaN is the only value not equal to itself
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _no_even_check(d_model, n_heads, n_kv_heads):
    if d_model % n_heads or n_heads % n_kv_heads:
        return "the heads do not split evenly"
    return None


def _groups_reversed(d_model, n_heads, n_kv_heads):   # n_kv_heads % n_heads
    if d_model % n_heads or d_model // n_heads % 2 or n_kv_heads % n_heads:
        return "the heads do not split evenly"
    return None


def _no_divisibility(d_model, n_heads, n_kv_heads):   # 130 // 4 = 32 hides the remainder
    if d_model // n_heads % 2 or n_heads % n_kv_heads:
        return "the heads do not split evenly"
    return None


WRONG = {"finite_number": [_bool_passes, _nan_passes, _inf_passes],
         "heads_problem": [_no_even_check, _groups_reversed, _no_divisibility]}
