"""Config values checked where they are used, so a wrong one fails at start-up naming its key, instead of
as a TypeError deep inside a rollout."""
from __future__ import annotations

import numbers
from typing import Any, Optional


def require_number(key: str, value: Any, *, integer: bool = False, low: Optional[float] = None,
                   high: Optional[float] = None, low_open: bool = False) -> None:
    """Raise ``ValueError`` naming ``key`` unless ``value`` is a number (an integer if ``integer``; bools
    are refused) within [low, high] (``low_open``: strictly above ``low``)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{key}={value!r} must be {'an integer' if integer else 'a number'}, "
                         f"got {type(value).__name__}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        lower = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        upper = "" if high is None else f"<= {high:g}"
        raise ValueError(f"{key}={value!r} is out of range: it must be {' and '.join(p for p in (lower, upper) if p)}")
