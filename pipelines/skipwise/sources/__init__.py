"""Inputs from where they live: raw data on DVC remotes or object-store prefixes, read once into a
local content-addressed cache (`contentcache`), every remote byte counted by class and priced
(`locality`), objects versioned by their ETag (`objects`), DVC remotes read by key (`remote`).

Imports the core, the store, the DVC and git readers, the project layer and itself.
"""
