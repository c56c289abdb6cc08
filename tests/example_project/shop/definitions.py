"""A small shop pipeline, written as a Dagster user would: hourly, daily x region, static and weekly
assets, pandas and JSON outputs, and plain Dagster assets on both sides of skipwise ones."""

import dagster as dg
import pandas as pd
import polars as pl

import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-15")
HOURLY = dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00", end_date="2024-01-03-00:00")
WEEKLY = dg.WeeklyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-15")
REGIONS = dg.StaticPartitionsDefinition(["north", "south", "east"])
DAILY_BY_REGION = dg.MultiPartitionsDefinition({"date": DAILY, "region": REGIONS})

raw_sales = sw.dvc_source("raw_sales", "data/raw/sales", partitions_def=DAILY)


class SalesConfig(dg.Config):
    min_amount: float = 0.0


@sw.asset(partitions_def=DAILY, group_name="features",
          ins={"raw_sales": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2))})
def sales_3d(context: dg.AssetExecutionContext, raw_sales: pl.DataFrame, config: SalesConfig) -> pl.DataFrame:
    """Sales per store over the partition's day and the two before it."""
    day = context.partition_key
    return (raw_sales.filter(pl.col("amount") >= config.min_amount)
            .group_by("store").agg(pl.col("amount").sum().alias("amount_3d")).sort("store")
            .with_columns(pl.lit(day).alias("day")))


@sw.asset(partitions_def=WEEKLY, group_name="features")
def weekly_sales(context: dg.AssetExecutionContext, sales_3d: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per day of the week: the 3-day totals, summed over stores."""
    return pl.DataFrame({"day": list(sales_3d), "total": [float(f["amount_3d"].sum()) for f in sales_3d.values()]})


@sw.asset(partitions_def=DAILY_BY_REGION, group_name="features",
          ins={"raw_sales": dg.AssetIn(partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"))})
def regional_sales(context: dg.AssetExecutionContext, raw_sales: pl.DataFrame) -> pl.DataFrame:
    """The day's sales of one region."""
    region = context.partition_key.keys_by_dimension["region"]
    return raw_sales.filter(pl.col("region") == region).sort("store")


@sw.asset(partitions_def=HOURLY, group_name="features")
def hourly_sales(context: dg.AssetExecutionContext, raw_sales: pl.DataFrame) -> pd.DataFrame:
    """Sales of one hour (pandas)."""
    start = context.partition_time_window.start
    return raw_sales.filter(pl.col("hour") == start.hour).select("store", "amount").sort("store").to_pandas()


@sw.asset(partitions_def=REGIONS, group_name="reports",
          ins={"raw_sales": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
def region_summary(context: dg.AssetExecutionContext, raw_sales: pl.DataFrame) -> dict:
    """Totals of one region over every day (JSON)."""
    rows = raw_sales.filter(pl.col("region") == context.partition_key)
    return {"region": context.partition_key, "total": round(float(rows["amount"].sum()), 6), "rows": rows.height}


@sw.asset(partitions_def=DAILY, group_name="features")
def ranked_stores(sales_3d: pl.DataFrame) -> pl.DataFrame:
    """The stores of the day ranked by their 3-day sales (a second daily level)."""
    return sales_3d.with_columns(pl.col("amount_3d").rank(descending=True).alias("rank")).sort("rank", "store")


@dg.asset(partitions_def=DAILY, io_manager_key="skipwise", group_name="reports")
def top_stores(sales_3d: pl.DataFrame) -> pl.DataFrame:
    """A plain Dagster asset downstream of a skipwise one."""
    return sales_3d.sort("amount_3d", descending=True).head(2)


@dg.asset(partitions_def=DAILY, io_manager_key="skipwise", group_name="reports")
def raw_rows(raw_sales: pl.DataFrame) -> dict:
    """A plain Dagster asset reading a DVC source through sw.IOManager (JSON output)."""
    return {"rows": raw_sales.height}


@dg.asset(io_manager_key="skipwise", group_name="reference")
def store_regions() -> pl.DataFrame:
    """A plain Dagster asset upstream of a skipwise one (stored by sw.IOManager, versioned by content)."""
    return pl.DataFrame({"store": ["s1", "s2", "s3", "s4"], "manager": ["ann", "bob", "cy", "dee"]})


@sw.asset(partitions_def=DAILY, group_name="features")
def sales_with_managers(raw_sales: pl.DataFrame, store_regions: pl.DataFrame) -> pl.DataFrame:
    """The day's sales with each store's manager."""
    return raw_sales.join(store_regions, on="store", how="left").sort("store", "hour")


defs = dg.Definitions(
    assets=[raw_sales, sales_3d, ranked_stores, weekly_sales, regional_sales, hourly_sales, region_summary, top_stores,
            store_regions, sales_with_managers, raw_rows],
    resources={"skipwise": sw.IOManager()},
    sensors=[sw.stale_partitions_sensor()],
)
