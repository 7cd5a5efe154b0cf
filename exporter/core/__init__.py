"""The pure centre and its vocabulary: the canonical `Run` model, the accounting that decides what
is counted, the scan-cost policy, workflow filters, label names, units, the exception tree,
sharding, clock skew, structured logs with secret redaction, the one-file plugin finder, and the
cyclic garbage collector's tuning. It does no network, file or database I/O of its own (`logs`
only configures where log lines go) and imports nothing of `exporter` outside `core`, so every
other package may lean on it."""
