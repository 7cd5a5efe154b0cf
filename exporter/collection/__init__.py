"""Collecting one source: the facade over its units (`cycle`) and their shared context, one poll
cycle (`poll`, its lookups by id in `rechecks`), the hint path (`hints`), the decide-and-commit
they share (`commit`), what is said after a commit (`reporting`), the schedule, per-source events
and repeated warnings, the audit walk, single-run lookups, the `check` diagnostics and the demo's
cycle summary. It may import `core`, `providers`, `state` and, of `exposition`, only the
self-metric instruments it records into."""
