"""The ledger: exact portfolio accounting, SQLite persistence and the CSV logs derived from it."""
