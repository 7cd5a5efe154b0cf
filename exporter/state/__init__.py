"""The state file (SQLite) and everything read from it: the store, the schema history (the alerting
tables included), refused-write errors, the snapshot a scrape renders and the recent runs the
landing page lists. It may import `core` only."""
