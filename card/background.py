"""A helper thread that lives exactly as long as a ``with`` block."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def thread_during(run: Callable[[threading.Event], None], name: str) -> Iterator[None]:
    """Run ``run(done)`` on a daemon thread while the block runs; when the block ends, ``done`` is
    set and the thread joined (``run`` must return soon after ``done`` is set: wait on it, never
    sleep past it). Used to follow a cancellation token or print while a prompt blocks."""
    done = threading.Event()
    thread = threading.Thread(target=run, args=(done,), name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
