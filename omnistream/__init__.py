"""omnistream: streaming anomaly detection for many cloud entities on Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("omnistream")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
