"""Property tests draw the same examples on every run and every machine: a failure reproduces,
and a pass does not depend on the luck of a draw."""

from hypothesis import settings

settings.register_profile("derandomized", derandomize=True)
settings.load_profile("derandomized")
