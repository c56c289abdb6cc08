"""Data functions a user calls: committed partitions read from outside a pipeline (`reading`:
`sw.read`, `sw.scan`, `sw.relation`) and the point-in-time join (`joins`: `sw.as_of_join`).

Imports the engine and the layers below it.
"""
