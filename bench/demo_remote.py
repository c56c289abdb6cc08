"""``make demo-remote``: the demo reading its raw data from a DVC remote in another region.

The raw data of the prepared demo (``make data``) is pushed by a producer checkout to a DVC remote
in an eu-west-1 bucket on an S3-compatible server on 127.0.0.1 (moto_server, started here unless
``$SKIPWISE_S3_ENDPOINT`` names one already running); a consumer checkout in us-east-1 with no raw
files and no DVC cache runs the whole pipeline three times: first (everything fetched), again
(nothing fetched), and after a one-day change (that day's object only). Each prints the bytes moved
per class and the dollars.

    python -m bench.demo_remote [--work .demo-remote] [--days N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.remote_setup import REPO, RemoteDemo, server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / ".demo-remote"), help="where the two checkouts go (replaced)")
    ap.add_argument("--days", type=int, default=None, help="only the first N days of raw data (default: all)")
    ap.add_argument("--change", default="2013-01-05", help="the day the producer changes before the third run")
    args = ap.parse_args(argv)
    raw = REPO / "data" / "raw"
    if not any((raw / "flights").glob("*.parquet")):
        print("Error: no raw data in data/raw\n  fix: run `make data` first", file=sys.stderr)
        return 1
    base = Path(args.work).resolve()
    base.mkdir(parents=True, exist_ok=True)
    s3 = server(base)
    try:
        demo = RemoteDemo(base, s3, args.days)
        print(f"S3-compatible server at {s3.endpoint}; pushing data/raw to s3://skipwise-demo-raw-euw1 (eu-west-1) ...")
        demo.setup(raw)
        selection = (
            []
            if args.days is None
            else [
                "--select",
                "flight_features,weather_features",
                "--partition",
                f"2013-01-01...2013-01-{args.days:02d}",
            ]
        )
        runs = [demo.materialize("1. first run", *selection)]
        runs.append(demo.materialize("2. second run", *selection))
        demo.change_day(args.change)
        runs.append(demo.materialize(f"3. {args.change} changed", *selection))
        print(f"consumer in us-east-1 (no raw files, no DVC cache): {demo.consumer}")
        for m in runs:
            print(m.line())
    finally:
        s3.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
