"""The files of a source checkout that some commands run: deploy/ (broker, demo) and bench/.

They are not part of the installed package. The checkout is ``$OMNISTREAM_HOME`` when set,
else the working directory, so ``omnistream broker start`` works from the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path


def checkout() -> Path:
    return Path(os.environ.get("OMNISTREAM_HOME") or Path.cwd())


def checkout_file(*parts: str) -> Path:
    """A file of the checkout, or a FileNotFoundError that says where it was looked for."""
    path = checkout().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run from the repository root or set OMNISTREAM_HOME to it")
    return path
