"""Owns every file the web app writes: one root folder per server process, swept by age, removed at shutdown.

Layout: `<files_dir>/llmcxr-XXXXXXXX/` is Gradio's upload and cache folder (GRADIO_TEMP_DIR points there, so
raw uploads, cached outputs and the side panel's images land in it) and holds `sessions/<random>/`, the files
of each chat session (ui/sessions.py Session). Session files live inside Gradio's folder so Gradio serves them as
they are: a file from elsewhere would be copied, and Gradio re-touches a reused copy, which would reset the
age the sweep reads.

A sweep deletes every file whose modification time is more than the TTL ago (the app writes each file once)
and every emptied folder; a background thread sweeps every TTL/4. The root is removed when the last server
using it closes (`Lease.release`, called by ui.StudioBlocks.close), at interpreter exit, and on SIGTERM or
SIGINT while `ui.StudioBlocks.launch` serves (see `interrupt_on_sigterm`).

Several servers in one process (the tests) share the root; the sweep uses the shortest TTL among them.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

GRADIO_ENV = "GRADIO_TEMP_DIR"  # where Gradio (6.31) writes uploads and cached outputs
SWEEPS_PER_TTL = 4  # a file lives at most TTL + TTL/4 without a request; a request's view is exact
EMPTY_DIR_GRACE_S = 2.0  # an empty folder younger than this may be about to receive a file: kept


@dataclass(eq=False)
class Lease:
    """One server's use of the process's file root: its TTL and what it needs kept or expired."""

    root: FileRoot  # the shared root
    ttl_s: float  # files older than this (seconds) are deleted
    keep: Callable[[], Iterable[str]]  # files never swept while this server runs (e.g. example images)
    on_sweep: Callable[[float], None]  # called after each sweep with the cutoff (epoch seconds)
    released: bool = field(default=False)

    def new_session_dir(self) -> Path:
        """A fresh, unguessable folder for one session's files (its name is served in URLs)."""
        return self.root.new_session_dir()

    def release(self) -> None:
        """This server is done: when it was the last, every file of the root is removed."""
        if not self.released:
            self.released = True
            self.root.detach(self)


class FileRoot:
    """The folder holding every file of the app, its sweep, and its background sweeper thread."""

    def __init__(self, base: Path):
        base.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="llmcxr-", dir=base)).resolve()
        self.sessions = self.path / "sessions"
        self.sessions.mkdir()
        self.closed = False
        self._leases: list[Lease] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set to sweep now (a shorter TTL joined) or to stop
        self._thread: threading.Thread | None = None

    @property
    def ttl_s(self) -> float:
        """The shortest TTL of the servers using this root (seconds)."""
        with self._lock:
            return min((lease.ttl_s for lease in self._leases), default=float("inf"))

    def new_session_dir(self) -> Path:
        folder = self.sessions / secrets.token_hex(16)
        folder.mkdir(parents=True)
        return folder

    def attach(self, lease: Lease) -> None:
        with self._lock:
            self._leases.append(lease)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llmcxr-sweeper", daemon=True)
                self._thread.start()
        self._wake.set()  # a shorter TTL sweeps sooner

    def detach(self, lease: Lease) -> None:
        with self._lock:
            if lease in self._leases:
                self._leases.remove(lease)
            last = not self._leases
        if last:
            self.close()

    def sweep(self, now: float | None = None) -> int:
        """Delete every file older than the TTL and every emptied folder; returns the files deleted."""
        now = time.time() if now is None else now
        ttl = self.ttl_s
        if ttl == float("inf"):
            return 0
        cutoff = now - ttl
        with self._lock:
            leases = list(self._leases)
        keep = {str(Path(p).resolve()) for lease in leases for p in lease.keep()}
        removed = _sweep_tree(self.path, cutoff, keep, now - EMPTY_DIR_GRACE_S, {self.path, self.sessions})
        for lease in leases:
            try:
                lease.on_sweep(cutoff)
            except Exception:  # a failing hook must not stop the sweeps
                logger.exception("sweep hook failed")
        return removed

    def close(self) -> None:
        """Stop sweeping and remove the whole root (every upload, output and session file)."""
        self.closed = True
        self._wake.set()
        shutil.rmtree(self.path, ignore_errors=True)

    def _run(self) -> None:
        while not self.closed:
            interval = max(0.05, min(self.ttl_s / SWEEPS_PER_TTL, 3600.0))
            self._wake.wait(interval)
            self._wake.clear()
            if self.closed:
                return
            try:
                self.sweep()
            except Exception:  # keep sweeping: one unreadable entry must not end expiry for good
                logger.exception("sweep failed")


def _sweep_tree(root: Path, cutoff: float, keep: set[str], dir_cutoff: float, fixed: set[Path]) -> int:
    """Delete files (and links) under root modified before cutoff, unless in keep; then empty folders
    modified before dir_cutoff, except those in fixed. Links are never followed."""
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                if os.lstat(path).st_mtime < cutoff and path not in keep:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:  # removed meanwhile (a session's own expiry, a closing session)
                continue
        if Path(dirpath) in fixed:
            continue
        with contextlib.suppress(OSError):  # not empty, or already gone
            if os.lstat(dirpath).st_mtime < dir_cutoff:
                os.rmdir(dirpath)
    return removed


_current: FileRoot | None = None
_current_lock = threading.Lock()


def attach(
    files_dir: str,
    ttl_s: float,
    keep: Callable[[], Iterable[str]] = tuple,
    on_sweep: Callable[[float], None] = lambda cutoff: None,
) -> Lease:
    """Join (or create) this process's file root; Gradio's uploads and cache go there from now on.

    files_dir: the folder to create the root in ("" = the system's temp folder); a server joining a root
    that is already there (another server in this process) shares it, wherever it is. Call before building
    the Gradio Blocks: each component reads GRADIO_TEMP_DIR when it is created.
    """
    if ttl_s <= 0:
        raise ValueError(f"The file TTL must be > 0 seconds, got {ttl_s}.")
    global _current
    with _current_lock:
        if _current is None or _current.closed:
            _current = FileRoot(Path(files_dir or tempfile.gettempdir()))
            os.environ[GRADIO_ENV] = str(_current.path)
            atexit.register(_current.close)
        lease = Lease(_current, float(ttl_s), keep, on_sweep)
        _current.attach(lease)
    return lease


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """While serving in the main thread, SIGTERM and SIGINT (Ctrl-C) raise KeyboardInterrupt, so both end in
    the same clean-up; a second signal during the clean-up is ignored (it must not cut the removal short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


UPLOADS_REFUSED = (
    "Too many uploads from your address: at most {n} in {window}. Uploads are kept until they expire; "
    "please wait a while before uploading again."
)


class UploadCap:
    """ASGI middleware bounding what one client address can put in the file root between sweeps: at most
    `limit` uploads (POST .../upload) per `window_s` seconds (the TTL); more are answered 429 with a message.

    The address is the TCP peer, or with trust_forwarded_for the first X-Forwarded-For entry (as
    sessions.client_address).
    """

    def __init__(
        self, app, limit: int, window_s: float, trust_forwarded_for: bool = False, window_text: str = ""
    ):
        self.app = app
        self.limit = limit
        self.window_s = window_s
        self.trust_forwarded_for = trust_forwarded_for
        self.message = UPLOADS_REFUSED.format(n=limit, window=window_text or f"{window_s:g} s").encode()
        self._times: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _client(self, scope) -> str:
        if self.trust_forwarded_for:
            for key, value in scope.get("headers") or ():
                if key == b"x-forwarded-for" and value.strip():
                    return value.decode("latin-1").split(",")[0].strip()
        client = scope.get("client")
        return client[0] if client else ""

    def _admit(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            times = self._times.setdefault(client, collections.deque())
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            if len(self._times) > 10_000:  # forget addresses with no upload in the window
                self._times = {k: v for k, v in self._times.items() if v}
            return True

    async def __call__(self, scope, receive, send) -> None:
        is_upload = (
            scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/upload")
        )
        if is_upload and not self._admit(self._client(scope)):
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": self.message})
            return
        await self.app(scope, receive, send)
