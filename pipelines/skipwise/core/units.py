"""Figures as a person reads them: seconds, bytes and plain numbers rounded to significant digits,
with their unit. Dollars are `skipwise.core.budget.format_usd`."""

from __future__ import annotations

import math


def significant(value: float, digits: int = 3) -> float:
    """`value` rounded to `digits` significant digits (0.010000000000001563 -> 0.01)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def format_seconds(seconds: float | None) -> str:
    """``0.0123 s``, ``1.23 s``, ``12.3 min``, ``1.23 h`` (3 significant digits); None is ``-``."""
    if seconds is None:
        return "-"
    s = float(seconds)
    if abs(s) < 60:
        return f"{significant(s):g} s"
    if abs(s) < 3600:
        return f"{significant(s / 60):g} min"
    return f"{significant(s / 3600):g} h"


def format_bytes(n: float | None) -> str:
    """``512 B``, ``1.5 KiB``, ``36.0 MiB`` ... (binary units, one decimal); None is ``-``."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
