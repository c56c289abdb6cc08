"""Cost reports from ledger rows: grouped tables, plain text, and a self-contained HTML page.

    rows = Ledger("data/ledger").read(since="2026-01-01")
    print(format_table(cost_table(rows, by="asset")))
    Path("cost.html").write_text(render_html(rows))

A figure nobody measured stays None (shown as ``-``): a sum is None only when every row lacked it.

Run records (``cache == "run"``: what each process used outside its partitions) are counted with
everything else, so a table's total is what the machines did: by asset and by partition they are
one ``(overhead)`` row; in the other groupings they are part of each group's figures, and the
``overhead_usd`` column says how much.

Dollars avoided need a baseline. By default (``avoided="daily"``) a cache hit counts what it
avoided once per (asset, partition, fingerprint) per UTC day: what a plain orchestrator would have
recomputed for the same requests, once a day. ``avoided="raw"`` counts every request (a rerun
every minute multiplies it).
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from datetime import date
from typing import Any, Callable, Iterable

from skipwise.core.units import format_bytes, format_usd, significant

GROUPINGS: tuple[str, ...] = ("asset", "partition", "run", "model", "experiment", "team", "day")

#: The key run records take when grouped by asset (or partition).
OVERHEAD = "(overhead)"
#: The key `skipwise verify`'s records take when grouped by asset: what auditing the cache cost.
VERIFY = "(verify)"

AVOIDED_BASELINES: dict[str, str] = {
    "daily": "each hit's avoided cost counted once per asset, partition and fingerprint per UTC day "
    "(what a plain orchestrator would have recomputed for the same requests, once a day)",
    "raw": "every hit's avoided cost counted on every request (a plain orchestrator recomputing "
    "every request, however often it is repeated)",
}

METRIC_COLUMNS: tuple[str, ...] = (
    "partitions",
    "up_to_date",
    "stale",
    "missing",
    "blocked",
    "runs",
    "computed",
    "skipped",
    "cpu_hours",
    "gpu_hours",
    "bytes_read",
    "bytes_written",
    "egress_bytes",
    "usd",
    "overhead_usd",
    "usd_avoided",
    "hit_rate",
)

_SUMMED = {
    "cpu_hours": ("cpu_seconds", 1 / 3600),
    "gpu_hours": ("gpu_seconds", 1 / 3600),
    "bytes_read": ("bytes_read", 1),
    "bytes_written": ("bytes_written", 1),
    "egress_bytes": ("egress_bytes", 1),
    "usd": ("usd", 1),
    "usd_avoided": ("usd_avoided", 1),
}


def _key_columns(by: str) -> tuple[str, ...]:
    return ("asset", "partition") if by == "partition" else (by,)


def _key(row: dict[str, Any], by: str) -> tuple[Any, ...]:
    if row.get("cache") == "run" and by in ("asset", "partition"):
        return (OVERHEAD, None) if by == "partition" else (OVERHEAD,)
    if row.get("cache") == "verify" and by == "asset":
        return (VERIFY,)
    if by == "partition":
        return (row.get("asset"), row.get("partition"))
    if by == "run":
        return (row.get("run_id"),)
    if by == "day":
        ts = row.get("ts") or ""
        return (ts[:10] or None,)
    return (row.get(by),)


def _sum(values: Iterable[Any]) -> float | int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def count_avoided(rows: list[dict[str, Any]], avoided: str = "daily") -> list[dict[str, Any]]:
    """`rows` with each hit's `usd_avoided` counted by the `avoided` baseline (see the module doc).

    ``"daily"``: the first hit (by time) of each (asset, partition, fingerprint, UTC day) keeps its
    figure, later ones the same day count 0. ``"raw"``: unchanged. The input is not modified.
    """
    if avoided not in AVOIDED_BASELINES:
        raise ValueError(f"unknown avoided baseline {avoided!r}; use one of {', '.join(AVOIDED_BASELINES)}")
    if avoided == "raw":
        return rows
    seen: set[tuple[Any, ...]] = set()
    out = list(rows)
    for i in sorted(range(len(rows)), key=lambda i: str(rows[i].get("ts") or "")):
        row = rows[i]
        if row.get("cache") not in ("hit", "restore") or row.get("usd_avoided") is None:
            continue
        key = (row.get("asset"), row.get("partition"), row.get("fingerprint"), str(row.get("ts") or "")[:10])
        if key in seen:
            out[i] = {**row, "usd_avoided": 0.0}
        else:
            seen.add(key)
    return out


def cost_table(rows: list[dict[str, Any]], by: str, avoided: str = "daily") -> list[dict[str, Any]]:
    """Group ledger rows by `by` (asset, partition, run, model, experiment, team or day).

    Each output row has the group's key column(s) (``asset`` and ``partition`` for
    ``by="partition"``) and: ``runs`` (distinct run ids), ``computed`` (misses), ``skipped``
    (hits), ``cpu_hours``, ``gpu_hours``, ``bytes_read``, ``bytes_written``, ``egress_bytes``
    (bytes that left the host), ``usd``, ``usd_avoided`` (by the `avoided` baseline, see
    `count_avoided`) and ``hit_rate`` (skipped / all). Run records form an ``(overhead)`` row by
    asset or partition (its ``computed``/``skipped`` are None); in the other groupings they are in
    each group's figures and an ``overhead_usd`` column says how much of ``usd`` they are.
    `skipwise verify`'s recomputations (``cache == "verify"``) form a ``(verify)`` row by asset.
    Rows come most expensive first; by day, in date order. Rows without the tag (e.g. no
    ``skipwise/model``) are grouped under None.
    """
    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}; use one of {', '.join(GROUPINGS)}")
    rows = count_avoided(rows, avoided)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[_key(row, by)].append(row)

    per_asset = by in ("asset", "partition")
    table = []
    for key, members in groups.items():
        out: dict[str, Any] = dict(zip(_key_columns(by), key))
        computed = sum(1 for r in members if r.get("cache") == "miss")
        skipped = sum(1 for r in members if r.get("cache") in ("hit", "restore"))
        only_runs = all(r.get("cache") in ("run", "verify") for r in members)  # neither computed nor skipped
        out["runs"] = len({r.get("run_id") for r in members})
        out["computed"] = None if only_runs else computed
        out["skipped"] = None if only_runs else skipped
        for column, (field, scale) in _SUMMED.items():
            total = _sum(r.get(field) for r in members)
            out[column] = total * scale if total is not None and scale != 1 else total
            if column == "usd" and not per_asset:
                out["overhead_usd"] = _sum(r.get("usd") for r in members if r.get("cache") == "run")
        out["hit_rate"] = skipped / (computed + skipped) if computed + skipped else None
        table.append(out)

    def order(row: dict[str, Any]) -> tuple[Any, ...]:
        names = tuple("" if row[c] is None else str(row[c]) for c in _key_columns(by))
        if by == "day":
            return names
        return (-(row["usd"] or 0.0),) + names

    return sorted(table, key=order)


def totals(table: list[dict[str, Any]]) -> dict[str, Any]:
    """One row summing a `cost_table` (``runs`` is left None: runs overlap between groups).

    ``overhead_usd`` is the run records' dollars, whichever grouping the table has."""
    out: dict[str, Any] = {"runs": None}
    for column in ("computed", "skipped") + tuple(_SUMMED):
        out[column] = _sum(r.get(column) for r in table)
    if any("overhead_usd" in r for r in table):
        out["overhead_usd"] = _sum(r.get("overhead_usd") for r in table)
    else:
        out["overhead_usd"] = _sum(r.get("usd") for r in table if r.get("asset") == OVERHEAD)
    seen = (out["computed"] or 0) + (out["skipped"] or 0)
    out["hit_rate"] = (out["skipped"] or 0) / seen if seen else None
    return out


def avoided_total(total: dict[str, Any]) -> float | None:
    """The dollars a `totals` row says the hits avoided: $0 without a hit, unknown (None) when
    there were hits and none had a measured cost to avoid."""
    return total.get("usd_avoided") if total.get("skipped") else 0.0


STATUS_STATES: tuple[str, ...] = ("up to date", "stale", "missing", "blocked")


def status_table(
    partitions: list[dict[str, Any]], ledger_rows: list[dict[str, Any]], avoided: str = "daily"
) -> list[dict[str, Any]]:
    """One row per asset for `skipwise status`: its partitions now (``partitions`` and one column
    per state, from rows with ``asset`` and ``state``), and from the cost ledger what was computed
    and skipped and the dollars spent and avoided; then a ``total`` row, and what verifying the
    cache cost and the processes' overhead as ``(verify)`` and ``(overhead)`` rows when the ledger
    has them. An asset the ledger has never seen has None (``-``) for the ledger's figures."""
    by_cost = {r["asset"]: r for r in cost_table(ledger_rows, "asset", avoided)} if ledger_rows else {}
    counts: dict[str, dict[str, int]] = {}
    for row in partitions:
        c = counts.setdefault(row["asset"], {s: 0 for s in STATUS_STATES})
        c[row["state"]] = c.get(row["state"], 0) + 1
    out = []
    for asset, c in counts.items():
        cost = by_cost.get(asset, {})
        out.append(
            {
                "asset": asset,
                "partitions": sum(c.values()),
                **{s.replace(" ", "_"): n for s, n in c.items()},
                "computed": cost.get("computed"),
                "skipped": cost.get("skipped"),
                "usd": cost.get("usd"),
                "usd_avoided": cost.get("usd_avoided"),
            }
        )
    for extra in (VERIFY, OVERHEAD):
        found = by_cost.get(extra)
        if found is not None:
            blank = {k: None for k in (out[0] if out else {}) if k != "asset"}
            out.append({"asset": extra, **blank, "usd": found.get("usd"), "usd_avoided": None})
    if out:
        total: dict[str, Any] = {"asset": "total"}
        for column in out[0]:
            if column != "asset":
                total[column] = _sum(r.get(column) for r in out)
        out.append(total)
    return out


_PHASES = (
    ("overhead_start_cpu_seconds", "start (interpreter, imports, Dagster) before the engine"),
    ("overhead_plan_cpu_seconds", "planning"),
    ("overhead_load_cpu_seconds", "loading asset code"),
    ("overhead_ledger_cpu_seconds", "ledger and manifest writes"),
    ("overhead_reads_cpu_seconds", "input reads charged to no partition of the run (look-back days outside it)"),
    ("overhead_other_cpu_seconds", "other (orchestrator between and after partitions)"),
)


def overhead_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the run records say, summed: processes' CPU, the part in partitions, the overhead and
    its phases (CPU seconds), and the overhead's dollars. Empty when there are no run records."""
    runs = [r for r in rows if r.get("cache") == "run"]
    if not runs:
        return {}
    out: dict[str, Any] = {"records": len(runs)}
    for field in ("process_cpu_seconds", "partition_cpu_seconds", "cpu_seconds", "usd", *(f for f, _ in _PHASES)):
        out[field] = _sum(r.get(field) for r in runs)
    return out


def overhead_line(rows: list[dict[str, Any]]) -> str:
    """One line: the processes' CPU, how much went to partitions, and where the overhead went."""
    o = overhead_summary(rows)
    if not o:
        return ""
    parts = ", ".join(f"{label} {o[f] or 0:.2f} s" for f, label in _PHASES)
    usd = format_usd(o["usd"]) if o["usd"] is not None else "-"
    return (
        f"overhead: {o['cpu_seconds'] or 0:.2f} CPU-s ({usd}) of the {o['process_cpu_seconds'] or 0:.2f} CPU-s "
        f"its {o['records']} run record(s) cover ({o['partition_cpu_seconds'] or 0:.2f} s in partitions): {parts}"
    )


# --- formatting -------------------------------------------------------------------------------


_FORMATS: dict[str, Callable[[Any], str]] = {
    "cpu_hours": lambda v: f"{v:.4f}",
    "gpu_hours": lambda v: f"{v:.4f}",
    "bytes_read": format_bytes,
    "bytes_written": format_bytes,
    "egress_bytes": format_bytes,
    "usd": format_usd,
    "overhead_usd": format_usd,
    "usd_avoided": format_usd,
    "hit_rate": lambda v: f"{100 * v:.0f}%",
}


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    fmt = _FORMATS.get(column)
    return fmt(value) if fmt else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """An aligned plain-text table of `cost_table` rows (text left, numbers right; None is
    ``-``)."""
    if not rows:
        return "(no cost records)"
    columns = list(rows[0])
    cells = [[_cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [c in METRIC_COLUMNS for c in columns]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


# --- HTML -------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
.charts { display: flex; flex-wrap: wrap; gap: 2em; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: .5em; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
table { border-collapse: collapse; margin-top: 1em; }
th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; }
th { text-align: left; background: #f4f4f4; } td.num { text-align: right; }
.empty { color: #888; }
"""


def _hbar_chart(
    items: list[tuple[str, float]], label: Callable[[float], str], vmax: float | None = None, color: str = "#4a7ebb"
) -> str:
    """Horizontal bars: one row per (name, value)."""
    if not items:
        return '<svg width="420" height="30"><text x="0" y="20">no data</text></svg>'
    row_h, name_w, bar_w = 22, 160, 200
    top = vmax if vmax is not None else max(v for _, v in items)
    height = row_h * len(items) + 6
    parts = [f'<svg width="{name_w + bar_w + 90}" height="{height}" role="img">']
    for i, (name, value) in enumerate(items):
        y = 3 + i * row_h
        # A non-zero value always shows at least a sliver.
        w = max(1.0, bar_w * value / top) if value > 0 and top > 0 else 0.0
        parts.append(f'<text x="{name_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(_short(name))}</text>')
        parts.append(
            f'<rect x="{name_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{color}"><title>{html.escape(name)}: {html.escape(label(value))}'
            "</title></rect>"
        )
        parts.append(f'<text x="{name_w + w + 4:.1f}" y="{y + 14}">{html.escape(label(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round axis values from 0 up to at least `top`: steps of 1, 2 or 5 times a power of ten."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [significant(k * step, 6) for k in range(n + 1)]


#: The series of the spend-over-time charts: partition work, and the processes' overhead (run records).
SERIES = (("partitions", "#4a7ebb", "work"), ("overhead", "#d08c3c", "overhead"))


def spend_by_day(rows: list[dict[str, Any]], kind: str) -> list[tuple[str, dict[str, float]]]:
    """Dollars per day and series: by the day the work ran (`kind="run"`, the record's UTC day) or
    by the data's day (`kind="data"`, the day a partition key starts with; overhead and partitions
    that are not days have none). Days in order, with their year."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        usd = r.get("usd")
        if not usd or r.get("cache") == "hit":
            continue
        series = "overhead" if r.get("cache") == "run" else "partitions"
        if kind == "run":
            day = (r.get("ts") or "")[:10]
        else:
            day = _day_of_key(r.get("partition")) if series == "partitions" else None
        if not day:
            continue
        bucket = out.setdefault(day, {name: 0.0 for name, _, _ in SERIES})
        bucket[series] += usd
    return sorted(out.items())


def _day_of_key(key: Any) -> str | None:
    text = str(key or "")[:10]
    try:
        date.fromisoformat(text)
    except ValueError:
        return None
    return text


def _columns_chart(items: list[tuple[str, dict[str, float]]], label: Callable[[float], str]) -> str:
    """Stacked columns over days, one colour per series (`SERIES`), with a y axis of round ticks
    and gridlines, and the days (with their year) under the columns."""
    if not items:
        return '<svg width="420" height="30"><text x="0" y="20">no data</text></svg>'
    plot_h, left, bottom, top_pad = 180, 86, 74, 12
    col_w = max(4, min(36, 640 // len(items)))
    ticks = nice_ticks(max(sum(v.values()) for _, v in items))
    vmax = ticks[-1]
    width = max(340, left + col_w * len(items) + 16)  # room for the legend under a few columns
    base = top_pad + plot_h
    parts = [f'<svg width="{width}" height="{base + bottom + 24}" role="img">']
    for t in ticks:
        y = base - plot_h * t / vmax
        parts.append(
            f'<g class="tick"><line x1="{left - 4}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}" '
            f'stroke="#e2e2e2"/><text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{html.escape(format_usd(t))}</text></g>"
        )
    parts.append(f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{base}" stroke="#777"/>')
    parts.append(f'<line x1="{left}" y1="{base}" x2="{width - 8}" y2="{base}" stroke="#777"/>')
    every = max(1, math.ceil(len(items) / 12))  # at most ~12 day labels, so they do not collide
    for i, (day, values) in enumerate(items):
        x, y = left + i * col_w + 1, float(base)
        for name, color, css in SERIES:
            v = values.get(name, 0.0)
            if v <= 0:
                continue
            h = max(1.0, plot_h * v / vmax)
            y -= h
            parts.append(
                f'<rect class="{css}" x="{x}" y="{y:.1f}" width="{max(1, col_w - 2)}" height="{h:.1f}" '
                f'fill="{color}"><title>{html.escape(day)} {name}: {html.escape(label(v))}</title></rect>'
            )
        if i % every == 0:
            cx = x + col_w / 2
            parts.append(
                f'<g class="xtick"><line x1="{cx:.1f}" y1="{base}" x2="{cx:.1f}" y2="{base + 4}" stroke="#777"/>'
                f'<text transform="translate({cx:.1f},{base + 14}) rotate(-40)" text-anchor="end">'
                f"{html.escape(day)}</text></g>"
            )
    legend_y = base + bottom + 14
    shown = [sr for sr in SERIES if any(v.get(sr[0], 0.0) > 0 for _, v in items)]
    for k, (name, color, _) in enumerate(shown):
        lx = left + k * 150
        parts.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{legend_y}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _usd(v: float) -> str:
    return format_usd(v)


def _short(name: str, n: int = 24) -> str:
    return name if len(name) <= n else name[: n - 1] + "\u2026"


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="empty">no cost records</p>'
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(_cell(c, row.get(c)))}</td>'
            if c in METRIC_COLUMNS
            else f"<td>{html.escape(_cell(c, row.get(c)))}</td>"
            for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(
    rows: list[dict[str, Any]], by: str = "asset", title: str = "skipwise cost report", avoided: str = "daily"
) -> str:
    """A self-contained HTML page (inline CSS and SVG, no scripts, no external references) for
    ledger `rows`: spend by data day and by run day (partitions and overhead as two series), spend
    per asset (overhead included), cache hit rate per asset, and the `cost_table` grouped by `by`."""
    by_asset = cost_table(rows, "asset", avoided)
    spend_asset = [(str(r["asset"]), r["usd"] or 0.0) for r in by_asset]
    hit_asset = [(str(r["asset"]), r["hit_rate"]) for r in by_asset if r["hit_rate"] is not None]
    table = cost_table(rows, by, avoided)
    total = totals(table)
    overhead = f" ({format_usd(total['overhead_usd'])} of it overhead)" if total.get("overhead_usd") else ""
    summary = (
        f"{len(rows)} records; {format_usd(total['usd'] or 0)} spent{overhead}; "
        f"{format_usd(avoided_total(total))} avoided by cache hits "
        f"({AVOIDED_BASELINES[avoided]}); "
        f"hit rate {_cell('hit_rate', total['hit_rate'])}"
    )
    charts = [
        ("Spend by data day (the day a partition holds; USD)", _columns_chart(spend_by_day(rows, "data"), _usd)),
        (
            "Spend by run day (the UTC day the work ran, overhead apart; USD)",
            _columns_chart(spend_by_day(rows, "run"), _usd),
        ),
        ("Spend per asset (USD)", _hbar_chart(spend_asset, _usd)),
        ("Cache hit rate per asset", _hbar_chart(hit_asset, lambda v: f"{100 * v:.0f}%", vmax=1.0, color="#5a9e5a")),
    ]
    figures = "".join(f"<figure><figcaption>{html.escape(cap)}</figcaption>{svg}</figure>" for cap, svg in charts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
        f'<div class="charts">{figures}</div>'
        f"<h2>By {html.escape(by)}</h2>{_html_table(table)}"
        "</body></html>\n"
    )
