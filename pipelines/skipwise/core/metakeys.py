"""The metadata keys skipwise writes and reads: on Dagster's asset definitions (what `@sw.asset`
declares, read back when the graph resolves), on materialization events, and in manifests.

One place for each name, so a writer and its readers cannot drift apart. Standard library only.
"""

# On an asset's definition (`@sw.asset` writes them, the graph resolution reads them)
FN = "skipwise/fn"  # "module:function" of the body
INPUTS = "skipwise/inputs"  # the inputs the body reads, comma-separated
PARAMS = "skipwise/params"  # the declared params, JSON
FILES = "skipwise/files"  # declared files (JSON list)
ENV = "skipwise/env"  # declared environment variables (JSON list)
NONDETERMINISTIC = "skipwise/nondeterministic"
COST_UNIT = "skipwise/cost_unit"

# On a computed partition: its event and its manifest's metadata
FORMAT = "skipwise/format"  # the output format's name (skipwise.formats)
CACHE = "skipwise/cache"  # miss, hit or restore
REASON = "skipwise/reason"
FINGERPRINT = "skipwise/fingerprint"
#: the output depends on state its fingerprint does not cover: never restored by fingerprint
NOT_RESTORABLE = "skipwise/not_restorable"
#: the git commit checked out when the partition was computed
GIT_COMMIT = "skipwise/git_commit"
OUTPUT_BYTES = "skipwise/output_bytes"

# On a step's materialization (one per asset and run)
STEP_COMPUTED = "skipwise/step/computed"
STEP_SKIPPED = "skipwise/step/skipped"
STEP_RESTORED = "skipwise/step/restored"
STEP_USD_SPENT = "skipwise/step/usd_spent"
STEP_USD_AVOIDED = "skipwise/step/usd_avoided"
STEP_SUMMARY = "skipwise/step/summary"
STORED_PARTITIONS = "skipwise/stored_partitions"  # what the IO manager wrote for a plain asset

# On a step's failure (a skipwise error, as Dagster's `Failure`)
ERROR = "skipwise/error"  # the error's kind: ConfigError, InputError, BudgetExceeded, ...
ERROR_MESSAGE = "skipwise/error_message"  # what is wrong, where (without the fix)
ERROR_FIX = "skipwise/fix"  # what to do

# On a source's definition (`sw.dvc_source`, `sw.object_source`)
KIND = "skipwise/kind"  # "source" or "asset"
PATH = "skipwise/path"  # the DVC-tracked folder, relative to the root
FILENAME = "skipwise/filename"  # a partition's file inside it, e.g. "{partition_key}.parquet"
LAYOUT = "skipwise/layout"  # a path template relative to PATH ("" PATH is the one file): replaces FILENAME
PATH_FN = "skipwise/path_fn"  # a function key -> paths, named for the graph's resolution to call
REMOTE = "skipwise/remote"  # the DVC remote it reads from ("" the default one)
URL = "skipwise/url"  # an object-store source's URL template
LOCATION = "skipwise/location"  # a [locations] entry of skipwise.toml
VERSIONED = "skipwise/versioned"  # the bucket keeps object versions
#: a source's region (on its definition), and compute's region (a run tag)
REGION = "skipwise/region"

# Run tags (cost attribution and why a run was started)
TRIGGER = "skipwise/trigger"  # stale-partitions, new-raw-data, retrain-on-feature-change, weekly-retrain, verify
RETRAIN_REASON = "skipwise/retrain_reason"
MODEL = "skipwise/model"
EXPERIMENT = "skipwise/experiment"
TEAM = "skipwise/team"
BUDGET_OVERRIDE = "skipwise/budget_override"  # "true": this run may go over the budgets
