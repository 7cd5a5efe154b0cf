"""Signed webhook events as hints: a verified event names a run, which is then looked up and
counted through the same core as a poll (see `service`). Polling stays the reconciler."""
