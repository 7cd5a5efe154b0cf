"""Collecting one source: one cycle (poll, decide, commit once), the hint path, the schedule,
per-source events and repeated warnings, the audit walk, single-run lookups, the `check`
diagnostics and the demo's cycle summary. It may import `core`, `providers`, `state` and, of
`exposition`, only the self-metric instruments it records into."""
