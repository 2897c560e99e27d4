"""The gate a background warm-up holds: requests wait for it, so none pays for compilation or first-call
set-up (Studio.start_warm_up), and the web app serves the page meanwhile. Nothing here touches a model."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from llmcxr_app.engine.generation import GenerationCancelled

logger = logging.getLogger(__name__)

POLL_S = 0.05  # how often a waiting request looks at its cancel event


class WarmUpGate:
    """Open (ready) except while a background warm-up runs."""

    def __init__(self) -> None:
        self.ready = threading.Event()  # clear while the warm-up runs
        self.ready.set()
        self.thread: threading.Thread | None = None  # the warm-up's thread, which the gate lets through

    def start(self, work: Callable[[], dict]) -> threading.Thread:
        """Close the gate and run ``work`` (returning a dict with "mode") in a daemon thread; the gate opens
        when it ends. A failed warm-up is logged and opens the gate too: the model still serves, only its
        first request is slower."""
        self.ready.clear()

        def run() -> None:
            t = time.perf_counter()
            try:
                mode = work().get("mode")
                logger.info("Warm-up done in %.1f s (%s): the model is ready", time.perf_counter() - t, mode)
            except Exception:
                logger.exception("Warm-up failed; serving without it")
            finally:
                self.ready.set()

        logger.info("Warm-up started in the background; requests wait for it")
        self.thread = threading.Thread(target=run, name="llmcxr-warm-up", daemon=True)
        self.thread.start()
        return self.thread

    def wait(self, cancel: threading.Event | None) -> None:
        """Return once the gate is open (at once in the warm-up's own thread); raise GenerationCancelled
        when ``cancel`` is set first."""
        if threading.current_thread() is self.thread:
            return
        while not self.ready.wait(timeout=POLL_S):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("Generation was cancelled while waiting for the warm-up.")
