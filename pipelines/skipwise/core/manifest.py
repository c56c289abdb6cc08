"""The manifest: the record, beside each partition, that it is done and what it was made from.

It is written last (the commit point) and is the source of truth: any index is derived from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from skipwise.core.hashing import digest

#: Bump when the meaning of a fingerprint changes: every partition then recomputes once.
#: 2: the partition key is part of the fingerprint (two partitions with equal inputs differ).
#: 3: what the code read while it ran (files, environment) counts; code versions leave orchestration
#:    (Dagster, skipwise) out and count output formats by their own scheme numbers.
SCHEME_VERSION = 3

InputVersions = Mapping[str, Mapping[str, str]]  # dep name -> upstream key -> version


def fingerprint(
    code_version: str,
    params_digest: str,
    inputs: InputVersions,
    partition: str,
    scheme: int = SCHEME_VERSION,
    observed: Mapping[str, str] | None = None,
) -> str:
    """H(scheme, code version, params, sorted input versions, partition key, observed reads): equal
    iff the work would be the same. The key counts because a body may read it (a static region, a
    day); `observed` maps each file or variable the code read to a keyed digest of what it read."""
    if scheme < 2:
        return digest({"scheme": scheme, "code": code_version, "params": params_digest, "inputs": inputs})
    if scheme < 3:
        return digest(
            {"scheme": scheme, "code": code_version, "params": params_digest, "inputs": inputs, "partition": partition}
        )
    return digest(
        {
            "scheme": scheme,
            "code": code_version,
            "params": params_digest,
            "inputs": inputs,
            "partition": partition,
            "observed": dict(observed or {}),
        }
    )


@dataclass(frozen=True)
class Manifest:
    """What a committed partition was computed from, and the output it produced."""

    asset: str
    partition: str
    fingerprint: str
    code_version: str
    params_digest: str
    inputs: Mapping[str, Mapping[str, str]]
    output: str  # file name beside the manifest
    output_hash: str  # sha256 of the output bytes
    output_size: int
    run_id: str = ""
    created_at: str = ""
    reason: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    cost: Mapping[str, Any] = field(default_factory=dict)
    scheme: int = SCHEME_VERSION
    #: On an object store, the output object's ETag when it was written: a rewrite in place shows.
    output_etag: str = ""
    #: What the code read while it ran: "file:<path>" / "dir:<path>" / "env:<NAME>" -> keyed digest
    #: (skipwise.core.observed). Part of the fingerprint, re-checked at planning.
    observed: Mapping[str, str] = field(default_factory=dict)

    @property
    def usd(self) -> Any:
        """The dollars computing this partition cost, as recorded (None when unknown): what a hit on
        it, or a restore of it, avoids."""
        return (self.cost or {}).get("usd")

    def consistent(self) -> bool:
        """True when the fingerprint matches the recorded provenance (guards against hand edits)."""
        return (
            fingerprint(self.code_version, self.params_digest, self.inputs, self.partition, self.scheme, self.observed)
            == self.fingerprint
        )

    def to_json(self) -> str:
        # The fields as they are: values are plain JSON data (as from_json reads them back), and
        # `asdict`'s deep copy of every nested mapping cost each committed partition about 0.4 ms.
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        if not data["output_etag"]:  # local partitions: the same bytes as before the field existed
            del data["output_etag"]
        if not data["observed"] and self.scheme < 3:
            del data["observed"]
        try:
            return json.dumps(data, sort_keys=True, indent=1)
        except TypeError:  # a nested value JSON cannot take as it is (a dataclass): asdict's copy of it
            copied = asdict(self)
            return json.dumps({k: copied[k] for k in data}, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        """Parse a manifest; ValueError if it is not one (the caller then treats it as absent)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("manifest is not a JSON object")
        names = set(cls.__dataclass_fields__)
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown manifest fields: {sorted(unknown)}")
        m = cls(**data)
        for attr in ("asset", "partition", "fingerprint", "code_version", "params_digest", "output", "output_hash"):
            if not isinstance(getattr(m, attr), str):
                raise ValueError(f"manifest field {attr} is not a string")
        if not isinstance(m.observed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in m.observed.items()
        ):
            raise ValueError("manifest field observed is not a mapping of dependency -> digest")
        if not isinstance(m.output_size, int) or not isinstance(m.inputs, dict) or not isinstance(m.output_etag, str):
            raise ValueError("manifest output_size/inputs malformed")
        return m
