"""Write the example's raw sales (one parquet file per day) under data/raw/sales."""

import sys
from datetime import date, timedelta
from pathlib import Path

import polars as pl


def write_day(root: Path, day: date, bump: float = 0.0) -> Path:
    rows = [{"store": f"s{s}", "region": ["north", "south", "east"][s % 3], "hour": h,
             "amount": float((day.toordinal() * 7 + s * 13 + h) % 50) + bump}
            for s in range(1, 5) for h in (0, 9, 17)]
    path = root / "data" / "raw" / "sales" / f"{day.isoformat()}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_parquet(path)
    return path


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for i in range(14):
        write_day(root, date(2024, 1, 1) + timedelta(days=i))
