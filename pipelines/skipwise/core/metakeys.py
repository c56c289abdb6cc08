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
