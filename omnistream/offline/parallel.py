"""Many entities, one function each, in parallel processes with a progress bar."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")


def threads_per_job(jobs: int) -> int:
    """Torch threads each of ``jobs`` processes may use without oversubscribing the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def run_all(fn: Callable[..., T], tasks: list[tuple[Any, ...]], jobs: int, description: str,
            console: Console) -> Iterator[T]:
    """``fn(*task)`` for every task, in order, in ``jobs`` processes (here when 1), while a
    progress bar counts them; the caller may print each result through ``console``."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        bar = progress.add_task(description, total=len(tasks))
        with ProcessPoolExecutor(jobs) if jobs > 1 else contextlib.nullcontext() as pool:
            pending = [pool.submit(fn, *task) for task in tasks] if pool else None
            for i, task in enumerate(tasks):
                yield pending[i].result() if pending else fn(*task)
                progress.advance(bar)
