"""The demo's partitioning: 2013, one partition per day (shared by the assets and their checks)."""

import dagster as dg

DAILY = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")
