"""The alerting agent: one Alertmanager alert per failed, stuck or long-waiting run.

It may import `core` and its settings in `config`; its tables live with the state file
(`exporter.state.alerttables`), and the store it writes through is named here as a protocol."""
