"""The alerting agent: one Alertmanager alert per failed, stuck or long-waiting run."""
