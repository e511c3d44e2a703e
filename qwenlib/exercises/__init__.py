"""Checks for the exercises at the end of each chapter: ``qwenlib.exercises.check_...``.

Hand-written (the exporter never touches this file); the checks themselves are
generated from the chapters' notebooks into ``qwenlib/exercises/chNN.py``.
"""

from qwenlib.exercises.ch01 import check_honest_split, check_make_pair, check_num_windows

__all__ = ["check_honest_split", "check_make_pair", "check_num_windows"]
