"""End every stream as soon as uvicorn is told to stop, not after its graceful timeout."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import Any


def install_signal_hook(close_all: Callable[[], None]) -> Callable[[], None]:
    """Call `close_all` on SIGTERM/SIGINT before uvicorn's own handler: uvicorn only runs the lifespan
    shutdown once open responses have finished, and a stream never finishes by itself. Only wraps a
    handler installed by a uvicorn `Server` (so never in tests that embed the server); returns the
    function that puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, tuple[Any, Any]] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous) or not hasattr(getattr(previous, "__self__", None), "should_exit"):
            continue

        def hook(signum: int, frame: Any, _previous: Any = previous) -> None:
            loop.call_soon_threadsafe(close_all)
            _previous(signum, frame)

        signal.signal(sig, hook)
        installed[sig] = (previous, hook)

    def uninstall() -> None:
        for sig, (previous, hook) in installed.items():
            if signal.getsignal(sig) is hook:
                signal.signal(sig, previous)

    return uninstall
