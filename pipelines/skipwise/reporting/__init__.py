"""Cost reports from ledger rows: grouped tables, plain text and a self-contained HTML page (`tables`).

Imports the core and the store.
"""
