"""Prices, and the ``skipwise.toml`` that holds them: turn a measured `CostVector` into dollars.

Dollars = compute + egress + requests + storage, each part priced from its own measured figures:

    compute  = cpu_seconds / 3600            x usd_per_vcpu_hour
             + memory held GiB-hours         x usd_per_gb_ram_hour
             + gpu_seconds / 3600            x usd_per_gpu_hour
    egress   = sum over classes of  egress_<class>_bytes GiB x egress_usd_per_gb[<class>]
    requests = get_requests / 1000 x get + put_requests / 1000 x put + list_requests / 1000 x list
    storage  = bytes_written GiB x storage usd_per_gb_month x storage_months

    memory held = rss_byte_seconds when measured, else peak_rss_bytes x wall_seconds

For a partition, `peak_rss_bytes` is its own increment (its peak above the process's resident
memory when it started), so a partition is not charged the framework's baseline; the process's
run record carries that baseline (its peak since the previous record x its wall, less what its
partitions were charged, as `rss_byte_seconds`), so the two add up to the process's peak of each
stretch held for that stretch.

CPU is priced by the CPU-seconds used, not by the vCPUs reserved: on a shared machine a partition
pays for its share. "GB" in prices means GiB (2**30 bytes), as AWS bills. A part whose inputs were
not measured stays None; `usd` is the sum of the parts that are present.

Defaults (`DEFAULT_PRICES`) mirror the ``skipwise.toml`` at the repository root, which gives the
public list-price source and date of each.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from skipwise.core.budget import Budgets
from skipwise.core.cost import EGRESS_CLASSES, CostVector
from skipwise.core.errors import ConfigError
from skipwise.core.locations import Location, compute_region, credentials_in, parse_locations

GIB = 2**30

# Keep in step with skipwise.toml at the repository root (a test compares the two).
DEFAULT_PRICES: dict[str, Any] = {
    "compute": {
        "laptop": {
            "usd_per_vcpu_hour": 0.0,
            "usd_per_gb_ram_hour": 0.0,
            "usd_per_gpu_hour": 0.0,
            "spot": {"usd_per_vcpu_hour": 0.0, "usd_per_gb_ram_hour": 0.0, "usd_per_gpu_hour": 0.0},
        },
        "aws-m7i": {
            "usd_per_vcpu_hour": 0.03465,
            "usd_per_gb_ram_hour": 0.0039375,
            "usd_per_gpu_hour": 0.0,
            "spot": {
                "usd_per_vcpu_hour": 0.0121,
                "usd_per_gb_ram_hour": 0.00138,
                "usd_per_gpu_hour": 0.0,
            },
        },
        "aws-g5-gpu": {
            "usd_per_vcpu_hour": 0.03465,
            "usd_per_gb_ram_hour": 0.0039375,
            "usd_per_gpu_hour": 0.8044,
            "spot": {
                "usd_per_vcpu_hour": 0.0121,
                "usd_per_gb_ram_hour": 0.00138,
                "usd_per_gpu_hour": 0.2815,
            },
        },
    },
    "egress_usd_per_gb": {
        "same_host": 0.0,
        "same_region": 0.01,
        "cross_region": 0.02,
        "internet": 0.09,
    },
    "requests_usd_per_1000": {"get": 0.0004, "put": 0.005, "list": 0.005},
    "storage": {"usd_per_gb_month": 0.023},
}

DEFAULT_PROFILE = "aws-m7i"
DEFAULT_PER_RUN_USD = 50.0
DEFAULT_PARTITION_USD_ESTIMATE = 0.01

_RATE_KEYS = ("usd_per_vcpu_hour", "usd_per_gb_ram_hour", "usd_per_gpu_hour")
_REQUEST_KEYS = ("get", "put", "list")
_PRICING_KEYS = ("compute", "egress_usd_per_gb", "requests_usd_per_1000", "storage")
_TOP_KEYS = ("pricing", "compute", "budgets", "locations", "cache", "store")
#: The input cache's defaults: where remote bytes land, and how much of them to keep.
DEFAULT_CACHE_DIR = "data/.skipwise/inputs"
DEFAULT_CACHE_MAX_BYTES = 10 * GIB


@dataclass(frozen=True)
class ComputeRates:
    """Dollars per hour of one vCPU, one GiB of RAM, one GPU."""

    usd_per_vcpu_hour: float
    usd_per_gb_ram_hour: float
    usd_per_gpu_hour: float


@dataclass(frozen=True)
class ComputeProfile:
    """A named kind of machine with its on-demand and (optional) spot rates."""

    name: str
    on_demand: ComputeRates
    spot: ComputeRates | None = None


@dataclass(frozen=True)
class Prices:
    """Every price skipwise knows; build with `load_prices` or `load_config`."""

    profiles: Mapping[str, ComputeProfile]
    egress_usd_per_gb: Mapping[str, float]
    get_usd_per_1000: float
    put_usd_per_1000: float
    list_usd_per_1000: float
    storage_usd_per_gb_month: float
    source: str = field(default="<defaults>", compare=False)
    #: how the prices are named in each cost record's `method` (portable: no absolute path);
    #: `source` (which may be absolute) is for error messages
    label: str = field(default="", compare=False)

    def rates(self, profile: str, spot: bool = False) -> ComputeRates:
        """The compute rates of `profile`; ConfigError naming the known profiles if unknown."""
        if profile not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise ConfigError(
                f"unknown compute profile {profile!r}; known profiles: {known}",
                hint=f"set [compute] profile to one of {known}, or define [pricing.compute.{profile}] in skipwise.toml",
                location=self.source,
            )
        p = self.profiles[profile]
        if not spot:
            return p.on_demand
        if p.spot is None:
            raise ConfigError(
                f"compute profile {profile!r} has no spot prices",
                hint=f"add [pricing.compute.{profile}.spot] or set [compute] spot = false",
                location=self.source,
            )
        return p.spot

    def price(
        self,
        cost: CostVector,
        profile: str,
        spot: bool = False,
        storage_months: float = 1.0,
    ) -> CostVector:
        """`cost` with ``usd_compute``, ``usd_egress``, ``usd_requests``, ``usd_storage`` and
        ``usd`` filled in (see the module docstring for the formula).

        Parts without measured inputs stay None. Egress measured only as a total (no class) is
        priced at the internet rate, and requests measured only as a total at the PUT rate:
        upper bounds, so a budget errs on the safe side. `usd_avoided` is kept as it is.
        """
        r = self.rates(profile, spot)
        held = cost.rss_byte_seconds
        if held is None:
            held = _mul(cost.peak_rss_bytes, cost.wall_seconds)
        compute = _sum_present(
            _mul(cost.cpu_seconds, r.usd_per_vcpu_hour / 3600),
            _mul(_mul(held, 1 / GIB), r.usd_per_gb_ram_hour / 3600),
            _mul(cost.gpu_seconds, r.usd_per_gpu_hour / 3600),
        )
        by_class = [_mul(getattr(cost, f"egress_{c}_bytes"), self.egress_usd_per_gb[c] / GIB) for c in EGRESS_CLASSES]
        egress = _sum_present(*by_class)
        if egress is None:
            egress = _mul(cost.egress_bytes, self.egress_usd_per_gb["internet"] / GIB)
        requests = _sum_present(
            _mul(cost.get_requests, self.get_usd_per_1000 / 1000),
            _mul(cost.put_requests, self.put_usd_per_1000 / 1000),
            _mul(cost.list_requests, self.list_usd_per_1000 / 1000),
        )
        if requests is None:
            requests = _mul(cost.requests, self.put_usd_per_1000 / 1000)
        storage = _mul(cost.bytes_written, self.storage_usd_per_gb_month * storage_months / GIB)
        kind = "spot" if spot else "on-demand"
        priced = f"priced: {profile} {kind} ({self.label or self.source})"
        return cost.replace(
            usd_compute=compute,
            usd_egress=egress,
            usd_requests=requests,
            usd_storage=storage,
            usd=_sum_present(compute, egress, requests, storage),
            method=f"{cost.method}; {priced}" if cost.method else priced,
        )


def _mul(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a * b


def _sum_present(*parts: float | None) -> float | None:
    present = [p for p in parts if p is not None]
    return sum(present) if present else None


# --- validation -------------------------------------------------------------------------------


class _Checker:
    """Validates a parsed TOML table, raising ConfigError with the key path and, when the
    file text is known, its line."""

    def __init__(self, source: str, text: str | None = None, label: str = "") -> None:
        self.source = source
        self.text = text
        self.label = label or source

    def fail(self, keypath: tuple[str, ...], message: str, hint: str) -> ConfigError:
        where = self.source
        line = _line_of(self.text, keypath) if self.text else None
        if line is not None:
            where = f"{self.source}:{line}"
        return ConfigError(f"{'.'.join(keypath)}: {message}", hint=hint, location=where)

    def table(self, value: Any, keypath: tuple[str, ...], allowed: tuple[str, ...] | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(keypath, f"expected a table, got {_kind(value)}", f"write it as [{'.'.join(keypath)}]")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    close = difflib.get_close_matches(key, allowed, n=1)
                    guess = f"did you mean {close[0]!r}? " if close else ""
                    raise self.fail(keypath + (key,), "unknown key", f"{guess}allowed keys here: {', '.join(allowed)}")
        return value

    def number(self, value: Any, keypath: tuple[str, ...], *, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(
                keypath,
                f"expected a number, got {_kind(value)} {value!r}",
                f"write e.g. {'.'.join(keypath[-1:])} = 0.05",
            )
        if not math.isfinite(value) or value < minimum:
            raise self.fail(
                keypath, f"expected a finite number >= {minimum:g}, got {value!r}", "use a non-negative price or limit"
            )
        return float(value)

    def string(self, value: Any, keypath: tuple[str, ...]) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(
                keypath, f"expected a non-empty string, got {_kind(value)}", f'write e.g. {keypath[-1]} = "aws-m7i"'
            )
        return value

    def boolean(self, value: Any, keypath: tuple[str, ...]) -> bool:
        if not isinstance(value, bool):
            raise self.fail(
                keypath,
                f"expected true or false, got {_kind(value)} {value!r}",
                f"write {keypath[-1]} = true or {keypath[-1]} = false",
            )
        return value


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _line_of(text: str, keypath: tuple[str, ...]) -> int | None:
    """Best-effort line of `keypath` in TOML `text`: a header ``[a.b]`` or a key ``b = ``,
    searched after the header of its parent table when there is one."""
    lines = text.splitlines()

    def seg(s: str) -> str:
        return r"""\s*["']?""" + re.escape(s) + r"""["']?\s*"""

    def header(path: tuple[str, ...]) -> re.Pattern[str]:
        return re.compile(r"^\s*\[\[?" + r"\.".join(seg(s) for s in path) + r"\]")

    own = header(keypath)
    for i, line in enumerate(lines):
        if own.match(line):
            return i + 1
    start = 0
    for depth in range(len(keypath) - 1, 0, -1):
        parent = header(keypath[:depth])
        found = next((i for i, line in enumerate(lines) if parent.match(line)), None)
        if found is not None:
            start = found + 1
            break
    key = re.compile(r"^" + seg(keypath[-1]) + r"[=.]")
    for i in range(start, len(lines)):
        if key.match(lines[i]):
            return i + 1
    return None


def _rates(check: _Checker, table: Any, keypath: tuple[str, ...]) -> ComputeRates:
    t = check.table(table, keypath, _RATE_KEYS)
    for key in _RATE_KEYS:
        if key not in t:
            raise check.fail(keypath + (key,), "missing", f"add {key} = <dollars> under [{'.'.join(keypath)}]")
    return ComputeRates(*(check.number(t[k], keypath + (k,)) for k in _RATE_KEYS))


def _profile(check: _Checker, name: str, table: Any) -> ComputeProfile:
    keypath = ("pricing", "compute", name)
    t = check.table(table, keypath, _RATE_KEYS + ("spot",))
    on_demand = _rates(check, {k: v for k, v in t.items() if k != "spot"}, keypath)
    spot = _rates(check, t["spot"], keypath + ("spot",)) if "spot" in t else None
    return ComputeProfile(name, on_demand, spot)


def _load_prices(data: Mapping[str, Any], check: _Checker) -> Prices:
    pricing = check.table(dict(data), ("pricing",), _PRICING_KEYS)
    defaults = copy.deepcopy(DEFAULT_PRICES)

    profiles = {name: _profile(check, name, t) for name, t in defaults["compute"].items()}
    for name, t in check.table(pricing.get("compute", {}), ("pricing", "compute"), None).items():
        profiles[name] = _profile(check, name, t)  # a profile is replaced as a whole

    egress_path = ("pricing", "egress_usd_per_gb")
    egress = dict(defaults["egress_usd_per_gb"])
    for key, value in check.table(pricing.get("egress_usd_per_gb", {}), egress_path, EGRESS_CLASSES).items():
        egress[key] = check.number(value, egress_path + (key,))

    req_path = ("pricing", "requests_usd_per_1000")
    requests = dict(defaults["requests_usd_per_1000"])
    for key, value in check.table(pricing.get("requests_usd_per_1000", {}), req_path, _REQUEST_KEYS).items():
        requests[key] = check.number(value, req_path + (key,))

    storage_path = ("pricing", "storage")
    storage = dict(defaults["storage"])
    for key, value in check.table(pricing.get("storage", {}), storage_path, ("usd_per_gb_month",)).items():
        storage[key] = check.number(value, storage_path + (key,))

    return Prices(
        profiles=profiles,
        egress_usd_per_gb=egress,
        get_usd_per_1000=requests["get"],
        put_usd_per_1000=requests["put"],
        list_usd_per_1000=requests["list"],
        storage_usd_per_gb_month=storage["usd_per_gb_month"],
        source=check.source,
        label=check.label,
    )


def load_prices(data: Mapping[str, Any], source: str) -> Prices:
    """Validate a ``[pricing]`` table (as parsed from TOML) and merge it over the defaults.

    Absent sections and keys take the defaults; a profile given under ``[pricing.compute.<name>]``
    replaces the default of that name as a whole and must give all three rates. An unknown key,
    a wrong type or a negative price raises ConfigError naming the key path and `source`.
    """
    return _load_prices(data, _Checker(source))


# --- skipwise.toml ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SkipwiseConfig:
    """The parsed ``skipwise.toml``: prices, the compute profile in use, budgets, storage
    locations, compute's region and the input cache.

    `region` is compute's region (``$SKIPWISE_REGION`` wins over ``[compute] region``; "" when
    neither says). `cache_dir` is relative to the project root unless absolute.
    `extra` holds the other top-level tables, which other parts of skipwise read.
    """

    prices: Prices
    profile: str = DEFAULT_PROFILE
    spot: bool = False
    budgets: Budgets = field(default_factory=lambda: Budgets(per_run_usd=DEFAULT_PER_RUN_USD))
    default_partition_usd_estimate: float = DEFAULT_PARTITION_USD_ESTIMATE
    source: str = "<defaults>"
    extra: Mapping[str, Any] = field(default_factory=dict)
    locations: Mapping[str, Location] = field(default_factory=dict)
    region: str = ""
    cache_dir: str = DEFAULT_CACHE_DIR
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES
    #: ``[store] url``: where partitions, manifests and the ledger live ("" = data/ on local disk)
    store_url: str = ""
    store_region: str = ""

    def price(self, cost: CostVector, storage_months: float = 1.0) -> CostVector:
        """Price `cost` with the configured profile and spot setting."""
        return self.prices.price(cost, self.profile, self.spot, storage_months)


def _budgets(check: _Checker, data: Any) -> tuple[Budgets, float]:
    path = ("budgets",)
    t = check.table(
        data,
        path,
        (
            "per_run_usd",
            "per_day_usd",
            "assets",
            "default_partition_usd_estimate",
            "per_run_egress_bytes",
            "per_run_egress_usd",
        ),
    )

    def opt(key: str, default: float | None) -> float | None:
        return check.number(t[key], path + (key,)) if key in t else default

    per_run = opt("per_run_usd", DEFAULT_PER_RUN_USD)
    per_day = opt("per_day_usd", None)
    assets = {
        str(name): check.number(v, path + ("assets", str(name)))
        for name, v in check.table(t.get("assets", {}), path + ("assets",), None).items()
    }
    estimate = opt("default_partition_usd_estimate", DEFAULT_PARTITION_USD_ESTIMATE)
    assert estimate is not None
    return Budgets(
        per_run_usd=per_run,
        per_day_usd=per_day,
        assets=assets,
        per_run_egress_bytes=opt("per_run_egress_bytes", None),
        per_run_egress_usd=opt("per_run_egress_usd", None),
    ), estimate


def _config_from(data: dict[str, Any], check: _Checker) -> SkipwiseConfig:
    extra = {}
    for key in data:
        if key in _TOP_KEYS:
            continue
        close = difflib.get_close_matches(key, _TOP_KEYS, n=1, cutoff=0.75)
        if close:
            raise check.fail((key,), f"unknown table, did you mean [{close[0]}]?", f"rename [{key}] to [{close[0]}]")
        extra[key] = data[key]

    prices = _load_prices(data.get("pricing", {}), check)

    compute = check.table(data.get("compute", {}), ("compute",), ("profile", "spot", "region"))
    region = check.string(compute["region"], ("compute", "region")) if "region" in compute else ""
    profile = check.string(compute.get("profile", DEFAULT_PROFILE), ("compute", "profile"))
    spot = check.boolean(compute.get("spot", False), ("compute", "spot"))
    if profile not in prices.profiles:
        known = ", ".join(sorted(prices.profiles))
        raise check.fail(
            ("compute", "profile"),
            f"unknown compute profile {profile!r}",
            f"use one of {known}, or define [pricing.compute.{profile}]",
        )
    if spot and prices.profiles[profile].spot is None:
        raise check.fail(
            ("compute", "spot"),
            f"profile {profile!r} has no spot prices",
            f"add [pricing.compute.{profile}.spot] or set spot = false",
        )

    budgets, estimate = _budgets(check, data.get("budgets", {}))
    locations = parse_locations(data.get("locations", {}), check.fail)
    cache = check.table(data.get("cache", {}), ("cache",), ("dir", "max_bytes"))
    cache_dir = check.string(cache["dir"], ("cache", "dir")) if "dir" in cache else DEFAULT_CACHE_DIR
    max_bytes = (
        int(check.number(cache["max_bytes"], ("cache", "max_bytes")))
        if "max_bytes" in cache
        else DEFAULT_CACHE_MAX_BYTES
    )
    store = check.table(data.get("store", {}), ("store",), ("url", "region"))
    store_url = check.string(store["url"], ("store", "url")) if "url" in store else ""
    if credentials_in(store_url):
        raise check.fail(
            ("store", "url"),
            "the URL carries credentials",
            "remove the user:password@ part; credentials come from the environment or the provider chain",
        )
    store_region = check.string(store["region"], ("store", "region")) if "region" in store else ""
    return SkipwiseConfig(
        prices,
        profile,
        spot,
        budgets,
        estimate,
        check.source,
        extra,
        locations,
        compute_region(region),
        cache_dir,
        max_bytes,
        store_url,
        store_region,
    )


def _label(path: Path, root: str | Path | None) -> str:
    """`path` as cost records name it: relative to `root` (default: the file's own folder, the
    project root for a project's skipwise.toml), so manifests do not depend on where the project is."""
    base = Path(root) if root is not None else path.parent
    try:
        return path.relative_to(base).as_posix() if path.is_absolute() == base.is_absolute() else path.as_posix()
    except ValueError:
        return path.as_posix()


def load_config(path: str | Path = "skipwise.toml", root: str | Path | None = None) -> SkipwiseConfig:
    """Read ``skipwise.toml``: ``[pricing]``, ``[compute] profile/spot/region``, ``[budgets]``,
    ``[locations.<name>]`` and ``[cache]``.

    A missing file gives the defaults. Malformed TOML raises ConfigError with the file and line;
    an unknown key or a wrong type raises ConfigError with the key path (and its line). Errors
    name the file as given; cost records name it relative to `root` (default: its folder).
    """
    path = Path(path)
    label = _label(path, root)
    if not path.exists():
        return _config_from({}, _Checker(f"{path} (absent, defaults)", label=f"{label} (absent, defaults)"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read: {exc}", hint="check the file's permissions and encoding", location=str(path)
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+)", str(exc))
        where = f"{path}:{match.group(1)}" if match else str(path)
        raise ConfigError(
            f"malformed TOML: {exc}",
            hint="fix the syntax (https://toml.io); quote keys with dashes or dots",
            location=where,
        ) from exc
    return _config_from(data, _Checker(str(path), text, label=label))
