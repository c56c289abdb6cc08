"""Figures as a person reads them: seconds, bytes and plain numbers rounded to significant digits,
with their unit. Dollars are `format_usd`."""

from __future__ import annotations

import math
from typing import Iterable


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


def format_usd(value: float | int | None) -> str:
    """Dollars as skipwise prints them everywhere: 4 decimals from one cent up ($20.0000,
    $0.0123), 3 significant digits below that ($0.00100, $0.0000100), so a small amount never
    reads as $0.0000; a real zero is "$0", and None is "-" (unknown, never zero)."""
    if value is None:
        return "-"
    v = float(value)
    if not math.isfinite(v):
        return f"${v}"
    sign, a = ("-" if v < 0 else ""), abs(v)
    if a == 0:
        return "$0"
    r = float(f"{a:.3g}")  # 3 significant digits (0.0009999 -> 0.001)
    if r >= 0.01:
        return f"{sign}${a:.4f}"
    if r < 1e-9:
        return f"{sign}${r:.2e}"
    return f"{sign}${r:.{2 - math.floor(math.log10(r))}f}"


def total_usd(amounts: Iterable[float | None]) -> float | None:
    """The sum of dollar amounts some of which may be unknown (None): the known ones' sum, 0.0
    when there are none at all (nothing to count is a real zero), and None when there are some
    and not one is known (an unknown is never $0)."""
    seen, known = False, []
    for a in amounts:
        seen = True
        if a is not None:
            known.append(float(a))
    return sum(known) if known or not seen else None
