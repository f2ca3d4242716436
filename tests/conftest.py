"""Shared test set-up: tests/ on sys.path for the plain references."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
