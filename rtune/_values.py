"""Predicates on values users hand rtune (parameters, reported metrics), shared by the
schedulers and the searchers."""

from __future__ import annotations

import numbers
from typing import Any


def is_number(value: Any) -> bool:
    """A real number, not a bool (numpy's numbers included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
