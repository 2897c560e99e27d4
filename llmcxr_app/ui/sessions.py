"""One browser session's private state, and the sessions of each client address (the per-client cap).

A `Session` lives in a gr.State (never in module globals), so one user's conversation and files are never
shown to another. Its files live in a folder of the sweeper's root (ui/sweeper.py); when they expire, the
conversation shows a note where each file was and goes on working.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from llmcxr_app.imaging.images import LoadedImage
from llmcxr_app.studio.types import PreparedImage
from llmcxr_app.ui import render
from llmcxr_app.ui.sweeper import Lease

TOO_MANY_SESSIONS = (
    "Too many conversations from your address are busy at once (the limit is {n}). Wait for one of them "
    "to finish or press Stop there, then send again; your message is still in the box."
)

EVICTED = (
    "This conversation was closed to make room for a newer one from the same address (at most {n} are kept); "
    "a new conversation starts here."
)
XRAY_EXPIRED = (
    "The previous X-ray expired (files are deleted {ttl} after upload): attach it again to ask about it."
)
# A file this close to its expiry is shown as expired (at most a tenth of the TTL early): the sweep may
# delete it any moment, and Gradio reads the files of a yielded conversation a little later.
VIEW_MARGIN_S = 5.0


@dataclass(eq=False)
class CurrentXray:
    """The last uploaded X-ray of a session: what follow-up questions refer to."""

    loaded: (
        LoadedImage  # all that is kept of the upload: display copy (<= 2048 px), model input, safe metadata
    )
    prepared: PreparedImage  # the model's view: codes, crop, reconstruction
    chat_path: str  # display PNG shown in the user's message
    name: str = ""  # the uploaded file's name, for the user's own downloads only (never logged: may identify)
    sha256: str = ""  # hex SHA-256 of the uploaded bytes
    model: str = ""  # short name of the model that made `prepared` (ui/models.py)
    views: dict[str, PreparedImage] = field(default_factory=dict)  # other models' views, made on first use


class SessionLimitError(Exception):
    """A client has as many live sessions as it may, and all of them are busy."""


class Session:
    """One browser session's private state: its folder of files, conversation, current X-ray and stop switch.

    Its files live in `workdir`, a folder of the sweeper's root (sweeper.py): the sweeper deletes them once
    older than the TTL; `view` then shows an "expired" note where the conversation showed them.
    """

    def __init__(self, workdir: Path, client: str = "") -> None:
        self.workdir = workdir
        self.client = client  # the address whose session cap this session counts against
        self.history: list[dict] = []  # chat messages (role, content, optional metadata)
        self.current: CurrentXray | None = None
        self.current_at = 0.0  # when the current X-ray was uploaded (epoch seconds)
        self.panel_stale = False  # the current X-ray expired: the side panel still shows it
        self.cancel: threading.Event | None = None  # set by Stop; the running request polls it every token
        self.idle = threading.Event()  # clear while a request of this session runs
        self.idle.set()
        self.request: dict = {}  # the running request's record for its downloads (ui/records.py)
        self.admitted = False  # the Send button's staging passed the queue check; /chat needs no second one
        self.last_used = time.monotonic()  # for evicting the least recently used idle session
        self.closed = False  # closed: its tab went away, the server shut down, or it was evicted
        self.evicted = False  # closed to make room for a newer session of the same client
        self._count = 0

    def path(self, stem: str, ext: str) -> Path:
        self._count += 1
        self.workdir.mkdir(parents=True, exist_ok=True)  # the sweeper removes emptied folders
        return self.workdir / f"{stem}-{self._count:03d}.{ext}"

    def remember(self, xray: CurrentXray) -> None:
        """Make xray the one follow-up questions refer to."""
        self.current, self.current_at = xray, time.time()

    def expire(self, cutoff: float) -> None:
        """Forget the current X-ray when it was uploaded before cutoff (epoch seconds): it is kept in memory
        no longer than its files are kept on disk."""
        if self.current is not None and self.current_at < cutoff:
            self.current = None
            self.panel_stale = True

    def view(self, cutoff: float, ttl_s: float) -> list[dict]:
        """The conversation to show, with an "expired" note where a file is gone or older than cutoff.

        The note replaces the file for good (in the history), so Gradio never serves a deleted file.
        """
        for message in list(self.history):
            content = message["content"]
            fresh = _without_expired(content, cutoff, ttl_s)
            if fresh is not content:
                message["content"] = fresh
        return list(self.history)

    def close(self, evicted: bool = False) -> None:
        """Drop the conversation and the X-ray and delete the session's files."""
        self.closed, self.evicted = True, evicted
        self.history.clear()
        self.current = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _file_paths(value) -> list[str]:
    """Every "path" inside a message part (a file dict, a File or Gallery component's value)."""
    if isinstance(value, dict):
        found = [value["path"]] if isinstance(value.get("path"), str) else []
        return found + [p for v in value.values() if isinstance(v, dict | list) for p in _file_paths(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _file_paths(v)]
    return []


def _component_paths(component: gr.File | gr.Gallery) -> list[str]:
    """The files a File (paths) or Gallery ((path, caption) pairs) in a message was made with. Components
    made inside an event keep only their constructor arguments."""
    value = component.constructor_args.get("value")
    items = value if isinstance(value, list | tuple) else [value]
    paths = [item[0] if isinstance(item, tuple | list) and item else item for item in items]
    return [str(p) for p in paths if isinstance(p, str | Path)] + _file_paths(paths)


def _expired(path: str, cutoff: float) -> bool:
    try:
        return os.stat(path).st_mtime < cutoff
    except OSError:  # deleted by the sweeper (or the session closed)
        return True


def _without_expired(content, cutoff: float, ttl_s: float):
    """content, or a copy with each part whose file expired replaced by a note (content itself if none)."""
    if isinstance(content, list):
        parts = [_without_expired(part, cutoff, ttl_s) for part in content]
        return parts if any(a is not b for a, b in zip(parts, content, strict=True)) else content
    if isinstance(content, gr.File | gr.Gallery):
        what = "downloads" if isinstance(content, gr.File) else "images"
        paths = _component_paths(content)
    elif isinstance(content, dict):
        what, paths = "image", _file_paths(content)
    else:
        return content
    return render.expired_note(what, ttl_s) if any(_expired(p, cutoff) for p in paths) else content


def client_address(request: gr.Request | None, trust_forwarded_for: bool) -> str:
    """The address a request's session cap is counted by: the TCP peer, or behind a proxy that writes
    X-Forwarded-For (a Hugging Face Space, where the peer is the proxy) its first entry, the client as the
    proxies report it. A client can forge that entry: it then dodges the cap, but sees no one else's data."""
    if request is None:
        return ""
    if trust_forwarded_for:
        forwarded = (request.headers or {}).get("x-forwarded-for", "")
        if forwarded.strip():
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else ""


class Sessions:
    """The live sessions of each client address, at most `cap` of them (ServerConfig.max_sessions_per_client).

    Opening one more evicts that client's least recently used idle session; while all are busy, it is refused.
    """

    def __init__(self, files: Lease, cap: int):
        self.files = files
        self.cap = cap
        self._by_client: dict[str, list[Session]] = {}
        self._lock = threading.Lock()

    def open(self, session: Session | None, client: str) -> Session:
        """The request's session: its own while open, else a new one counted against `client`.

        Raises SessionLimitError when the client has `cap` sessions and none is idle.
        """
        if session is not None and not session.closed:
            session.last_used = time.monotonic()
            return session
        with self._lock:
            mine = [s for s in self._by_client.get(client, []) if not s.closed]
            if len(mine) >= self.cap:
                idle = [s for s in mine if s.idle.is_set()]
                if not idle:
                    raise SessionLimitError(TOO_MANY_SESSIONS.format(n=self.cap))
                oldest = min(idle, key=lambda s: s.last_used)
                oldest.close(evicted=True)
                mine.remove(oldest)
            new = Session(self.files.new_session_dir(), client)
            self._by_client[client] = mine + [new]
        return new

    def live(self) -> list[Session]:
        with self._lock:
            return [s for group in self._by_client.values() for s in group if not s.closed]

    def expire(self, cutoff: float) -> None:
        """The sweeper's hook: each session forgets an X-ray uploaded before cutoff."""
        for session in self.live():
            session.expire(cutoff)

    def close_all(self) -> None:
        for session in self.live():
            session.close()
        with self._lock:
            self._by_client.clear()


def delete_session(session: Session | None) -> None:
    """gr.State's delete callback (the tab is gone): free the session's files and its place in the cap."""
    if session is not None:
        session.close()
