"""Helpers for the notebooks themselves, not for programs using qwenlib.

Hand-written (the exporter never touches this file).
"""

from __future__ import annotations

from typing import Callable

__all__ = ["add_to_class"]


def add_to_class(cls: type) -> Callable:
    """Attach the decorated function to `cls` as a method, so that a chapter can build a
    big class a method (or a phase) per cell, as d2l does::

        @add_to_class(PretrainingTrainer)
        def _update(self, run): ...

    The exporter (`tools/export.py`) moves such a function into the class's body in the
    generated module and drops the decorator: the package has the class in one piece.
    """
    def attach(function: Callable) -> Callable:
        inner = getattr(function, "fget", None) or getattr(function, "__func__", function)
        setattr(cls, inner.__name__, function)  # a property or a static method by its name
        return function
    return attach
