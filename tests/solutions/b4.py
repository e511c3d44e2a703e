"""Right and wrong answers to the exercises of engineering notebook B4 (the data cache)."""

import hashlib
import json

import numpy as np


def ids_problem(ids, vocab_size, count):
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        return f"a {ids.dtype} array of shape {ids.shape}, not 1-D integer ids"
    if len(ids) != count:
        return f"{len(ids)} ids, expected {count}"
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        return f"ids span {ids.min()} .. {ids.max()}, outside [0, {vocab_size})"
    return None


def _by_dtype_kind(ids, vocab_size, count):
    if ids.dtype.kind not in "iu" or ids.shape != (count,):
        return "not 1-D integer ids of the recorded count"
    return None if ((ids >= 0) & (ids < vocab_size)).all() else "an id outside the vocabulary"


def cache_digest(key):
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _sorted_items(key):
    text = json.dumps(dict(sorted(key.items())))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


ALTERNATIVE = {"ids_problem": [_by_dtype_kind], "cache_digest": [_sorted_items]}


def _no_dtype_check(ids, vocab_size, count):     # float or bool ids pass
    if ids.ndim != 1 or len(ids) != count:
        return "wrong shape"
    return None if ids.min() >= 0 and ids.max() < vocab_size else "out of range"


def _off_by_one(ids, vocab_size, count):         # lets an id equal to vocab_size through
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or len(ids) != count:
        return "bad array"
    return None if ids.min() >= 0 and ids.max() <= vocab_size else "out of range"


def _no_count(ids, vocab_size, count):           # a truncated array passes
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        return "bad array"
    return None if ids.min() >= 0 and ids.max() < vocab_size else "out of range"


def _insertion_order(key):                       # another order, another folder
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


def _python_hash(key):                           # hash() of a str changes between runs
    return f"{hash(json.dumps(key, sort_keys=True)) & (2**48 - 1):012x}"


def _md5(key):
    return hashlib.md5(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


WRONG = {"ids_problem": [_no_dtype_check, _off_by_one, _no_count],
         "cache_digest": [_insertion_order, _python_hash, _md5]}
