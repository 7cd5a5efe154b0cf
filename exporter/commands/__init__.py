"""The commands behind `exporter.cli`: each takes validated inputs, never argparse's namespace,
and returns the process's exit code. Like `app`, they wire and may import any package."""
