"""workflow-runs-exporter: Prometheus metrics for document-AI workflow runs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("workflow-runs-exporter")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
