"""The chat's event handlers: route a message, stream the Studio's answer into the conversation.

All per-user data lives in a `Session` held in a gr.State (never in module globals), so one user's
conversation and files are never shown to another. ui.py lays out the page and wires these handlers.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from llmcxr_app import protocol, redact
from llmcxr_app.config import SamplingConfig, ServerConfig
from llmcxr_app.engine.generation import GenerationCancelled
from llmcxr_app.imaging.exports import DISCLAIMER, answer_json, answer_text
from llmcxr_app.imaging.images import ImageLoadError, LoadedImage, load_image
from llmcxr_app.studio.facade import PreparedImage, Result, Studio, StudioInputError
from llmcxr_app.ui import render, zerogpu
from llmcxr_app.ui.draw import DrawFlow
from llmcxr_app.ui.routing import CHOICES, TASK_AMBIGUOUS, Route, chosen_mode, mode_label, redo_choices, route
from llmcxr_app.ui.sweeper import Lease, attach

logger = logging.getLogger(__name__)

PREVIEW_EVERY = 2  # grid rows between progressive previews of a drawing
STOP_WAIT_S = 5.0  # how long Stop waits for the generation thread to acknowledge
GENERIC_ERROR = "Something went wrong while generating; the conversation is kept. Please try again."
QUEUE_FULL = (
    "The model is busy: {n} requests are already waiting for it, as many as this server holds. Your message "
    "was not sent and is still in the box: please send it again in a minute or two."
)
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


def _delete_session(session: Session | None) -> None:
    """gr.State's delete callback (the tab is gone): free the session's files and its place in the cap."""
    if session is not None:
        session.close()


def _discard_upload(path: str | None, keep: set[Path]) -> None:
    """Delete the file Gradio stored for an upload (it may hold names and IDs in its header).

    Only files inside Gradio's upload folder are removed (never an example, nor a file the server was given),
    with the per-upload folder Gradio made for it when that is left empty. `keep`: resolved paths to spare.
    """
    if not path:
        return
    cache = Path(get_upload_folder()).resolve()
    try:
        file = Path(path).resolve()
        if cache not in file.parents or file in keep:
            return
        file.unlink(missing_ok=True)
        if file.parent != cache and not any(file.parent.iterdir()):
            file.parent.rmdir()
    except OSError as exc:  # already swept, or a race with another request: nothing to keep anyway
        logger.info("upload not deleted (%s)", type(exc).__name__)


def _refused(exc: Exception, text: str, path: str | None, keep: set[Path]) -> dict:
    """The message box's value after a user's mistake, which logs one line: no traceback (Gradio's own print
    is off too) and no message (it may quote the user's text). The upload goes back into the box only when
    the image itself was fine; otherwise it is deleted."""
    logger.info("request refused: %s", type(exc).__name__)
    back = path if isinstance(exc, StudioInputError) and path else None
    _discard_upload(None if back else path, keep)
    return {"text": text, "files": [back] if back else []}


def _sampling(temperature, top_p, max_new_tokens, seed) -> SamplingConfig:
    try:
        return SamplingConfig(
            temperature=float(temperature),
            top_p=float(top_p),
            max_new_tokens=int(max_new_tokens),
            seed=render.parse_seed(seed),
        )
    except (TypeError, ValueError) as exc:
        raise StudioInputError(str(exc)) from None


def _message_parts(message) -> tuple[str, str | None]:
    """(text, first file path or None) from a MultimodalTextbox value, as the UI or the API sends it."""
    if message is None:
        return "", None
    if isinstance(message, str):
        return message.strip(), None
    files = message.get("files") or []
    first = files[0] if files else None
    if isinstance(first, dict):
        first = first.get("path")
    return str(message.get("text") or "").strip(), first


class ChatApp(DrawFlow):
    """Event handlers bound to one Studio. Holds no per-user data (that is in the Session argument)."""

    def __init__(self, studio: Studio, server: ServerConfig):
        redact.install()  # no header value of an upload may reach the log (idempotent; app.py does it too)
        self.studio = studio
        self.server = server
        self.example_files: set[Path] = set()  # Gradio's cached copies of the examples: public, never deleted
        # The model's work, on the GPU on ZeroGPU (zerogpu.py): there it runs in a worker process, so these
        # take and yield only picklable values and cannot see Stop's threading.Event (Stop still ends the
        # event for the user). Elsewhere they are the plain calls.
        self._prepare = zerogpu.gpu(30)(studio.prepare)
        self._stream = zerogpu.gpu()(self._model_stream)
        self.tag = "llmcxr-demo" if studio.info.is_demo else "llmcxr"  # every download name says "demo"
        # Every file of this app's sessions lives in the sweeper's root; the sweeper also expires the
        # sessions' X-rays in memory. ui.build sets `files.keep` (the examples) and `waiting`.
        self.files = attach(server.files_dir, server.delete_cache_s)
        self.sessions = Sessions(self.files, server.max_sessions_per_client)
        self.files.on_sweep = self.sessions.expire
        self.waiting: Callable[[], int] = lambda: 0  # requests waiting in the queue (ui.build: Gradio's)

    def close(self) -> None:
        """Close every session and give up this app's use of the file root (the last one removes it)."""
        self.sessions.close_all()
        self.files.release()

    # -- sessions and capacity --------------------------------------------------------------------------
    def _view(self, session: Session) -> list[dict]:
        """The session's conversation as it may be shown now (expired files replaced by a note)."""
        ttl = self.server.delete_cache_s
        return session.view(time.time() - ttl + min(VIEW_MARGIN_S, ttl / 10), ttl)

    def _open(self, session: Session | None, request: gr.Request | None) -> Session:
        """The request's session (a new one when it has none, or its old one was closed), its expired X-ray
        forgotten. Raises gr.Error when the client's session cap is reached with every session busy."""
        evicted = session is not None and session.evicted
        try:
            session = self.sessions.open(session, client_address(request, self.server.trust_forwarded_for))
        except SessionLimitError as exc:
            raise gr.Error(str(exc)) from None
        if evicted:
            gr.Warning(EVICTED.format(n=self.server.max_sessions_per_client))
        session.expire(time.time() - self.server.delete_cache_s)
        return session

    def _queue_full(self) -> bool:
        return self.waiting() >= self.server.queue_size

    def admit(self, message, mode, temperature, top_p, max_new_tokens, seed, candidates, session):
        """/chat's validator, run as a request asks to join the queue: refuse it with QUEUE_FULL when the
        queue holds queue_size requests (a message the Send button staged passed this check already)."""
        ok = (session is not None and session.admitted) or not self._queue_full()
        first = gr.validate(ok, "" if ok else QUEUE_FULL.format(n=self.server.queue_size))
        return [first] + [gr.validate(True, "")] * 7

    def keep_examples(self, samples: list[list]) -> None:
        """Remember the files of gr.Examples samples (Gradio copied them into its cache when the page was
        built): clicking an example sends that copy, which must survive for the next user."""
        for sample in samples:
            for value in sample:
                for item in (value.get("files") or []) if isinstance(value, dict) else []:
                    path = item.get("path") if isinstance(item, dict) else item
                    if path:
                        self.example_files.add(Path(path).resolve())

    # -- side panel -------------------------------------------------------------------------------------
    def panel(self, session: Session | None) -> tuple:
        """Updates for (empty note, overview image, summary, warnings, model input, reconstruction, histogram,
        forget button)."""
        cur = session.current if session else None
        if cur is None:
            return (
                gr.update(visible=True), gr.update(value=None, visible=False), gr.update(value=""),
                gr.update(value="", visible=False), gr.update(value=None), gr.update(value=None),
                gr.update(value=None, visible=False), gr.update(visible=False),
            )  # fmt: skip
        info = self.studio.info
        loaded, prep = cur.loaded, cur.prepared
        hist = None
        if loaded.histogram is not None:
            hist = render.histogram_plot(*loaded.histogram, loaded.window)
        warn = render.warnings_markdown(loaded.warnings)
        return (
            gr.update(visible=False),
            gr.update(value=render.crop_overlay(loaded.image, prep.crop_box, loaded.size), visible=True),
            gr.update(value=render.image_summary(loaded, prep.crop_box, info.resolution, info.grid)),
            gr.update(value=warn, visible=bool(warn)),
            gr.update(value=render.display_copy(prep.model_input, 256)),
            gr.update(value=render.display_copy(prep.reconstruction, 256)),
            gr.update(value=hist, visible=hist is not None),
            gr.update(visible=True),
        )

    # -- events -----------------------------------------------------------------------------------------
    def stage(self, message, session: Session | None, request: gr.Request | None = None):
        """Show the user's message at once (before the queue), clear the box, switch it to its Stop button.

        A full queue or the session cap raises gr.Error before any output: the text and attachment stay in
        the box and Send stays, so the user can send again.
        """
        if self._queue_full():
            raise gr.Error(QUEUE_FULL.format(n=self.server.queue_size))
        session = self._open(session, request)
        if not session.idle.is_set():
            raise gr.Error(
                "The previous answer is still being generated: wait for it or press Stop.",
                print_exception=False,
            )
        session.admitted = True
        text, path = _message_parts(message)
        # The raw upload is not echoed (a DICOM would show as a link with its file name): a placeholder
        # stands in until chat() replaces it with the decoded display copy.
        shown = self._view(session) + (
            [{"role": "user", "content": "_(reading the attached image…)_"}] if path else []
        )
        if text:
            shown = shown + [{"role": "user", "content": text}]
        busy_box = gr.update(value=None, submit_btn=False, stop_btn=True)
        return message, busy_box, shown, session

    def forget(self, session: Session | None):
        if session is not None:
            session.current = None
        gr.Info("The current X-ray was forgotten; new questions are answered without an image.")
        return (session, *self.panel(session))

    def clear(self, session: Session | None):
        """The chat's trash button: stop any running answer, forget the conversation and the X-ray."""
        if session is not None:
            if session.cancel is not None:
                session.cancel.set()
            session.history.clear()
            session.current = None
        return (session, *self.panel(session))

    def stop(self, session: Session | None):
        """Stop this session's running request; the partial answer stays, marked "(stopped)"."""
        idle_box = gr.update(submit_btn=True, stop_btn=False)
        if session is None:
            return gr.skip(), idle_box
        if session.cancel is not None:
            session.cancel.set()
        session.idle.wait(STOP_WAIT_S)
        return self._view(session), idle_box

    def chat(
        self,
        message,
        mode,
        temperature,
        top_p,
        max_new_tokens,
        seed,
        candidates,
        session: Session | None,
        request: gr.Request | None = None,
    ):
        """Answer one message: route it (see ui_routing), stream the answer into the conversation.

        Yields (chat messages, session, textbox, *panel updates). Input problems raise gr.Error with their
        message and put the text back in the box; the conversation is never lost.
        """
        session = self._open(session, request)
        session.admitted = False
        self._view(session)  # expired files become notes before anything is shown
        skip_panel = (gr.skip(),) * 8
        text, path = _message_parts(message)
        try:
            sampling = _sampling(temperature, top_p, max_new_tokens, seed)
            n = max(1, min(int(candidates or 1), self.server.max_candidates))
            new = self._load(path, session) if path else None
            has_image = new is not None or session.current is not None
            plan = route(str(mode or "Auto"), text, new is not None, has_image)
            if plan.task == TASK_AMBIGUOUS:  # a pasted report with an X-ray: ask which is meant
                _discard_upload(path, self._keep())
                yield from self._which(session, new, text)
                return
            image = (
                new.prepared if new is not None else (session.current.prepared if session.current else None)
            )
            first = self._start(plan, image, sampling, None)  # validates the request before it is shown
        except (ImageLoadError, StudioInputError) as exc:
            yield (
                self._view(session),
                session,
                gr.update(value=_refused(exc, text, path, self._keep())),
                *skip_panel,
            )
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception:  # a real failure: the whole traceback (redact.py keeps file content out of it)
            logger.exception("request setup failed")
            _discard_upload(path, self._keep())
            yield (self._view(session), session, gr.update(value={"text": text, "files": []}), *skip_panel)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from None
        _discard_upload(path, self._keep())  # decoded: only the app's display copy and model input are kept
        if new is not None:
            session.remember(new)
            session.history.append({"role": "user", "content": {"path": new.chat_path}})
            for w in new.loaded.warnings:
                gr.Warning(w)
        if text:
            session.history.append({"role": "user", "content": text})
        session.cancel = cancel = threading.Event()
        session.idle.clear()
        try:
            panel = self._panel_if_changed(session, new is not None)
            yield (self._view(session), session, gr.update(value=None), *panel)
            first.close()  # the validation stream never ran; real streams below carry the cancel event
            if plan.task == protocol.TASK_DRAW:
                answers = self._draw(session, plan.text, sampling, n, cancel)
            else:
                answers = self._text(session, plan, image, sampling, cancel)
            start = len(session.history)
            for _ in answers:
                yield (self._view(session), session, gr.skip(), *skip_panel)
            choices = redo_choices(plan.task, session.current is not None, bool(text))
            _label_answer(session.history[start:], mode_label(str(mode or "Auto"), plan.task), choices)
            yield (self._view(session), session, gr.skip(), *skip_panel)
        except GenerationCancelled:
            session.idle.set()
            yield (self._view(session), session, gr.skip(), *skip_panel)
        except Exception:  # a real failure: the whole traceback (redact.py keeps file content out of it)
            logger.exception("generation failed")
            session.history.append({"role": "assistant", "content": "_(interrupted by an error)_"})
            session.idle.set()
            yield (self._view(session), session, gr.skip(), *skip_panel)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from None
        finally:  # also when Gradio closes this generator (a cancelled event, a closed tab)
            cancel.set()  # a model step still running in another thread stops at the next token
            session.idle.set()

    def choose(self, session: Session | None, evt: gr.SelectData):
        """A click on a choice under a message (Auto's question, or "Redo as ..."): the last typed text
        again, in the chosen mode. Returns (message for chat(), mode, session, message box update)."""
        if session is None or not session.idle.is_set():
            raise gr.Error("Wait for the current answer to finish (or press Stop), then choose again.")
        try:
            mode = chosen_mode(str(evt.value))
        except StudioInputError as exc:
            raise gr.Error(str(exc)) from None
        last = next((m for m in reversed(session.history) if m["role"] == "user"), None)
        text = last["content"] if last is not None and isinstance(last["content"], str) else ""  # this turn's
        busy_box = gr.update(value=None, submit_btn=False, stop_btn=True)  # as stage(): Stop ends the redo
        return {"text": "" if mode == "Report" else text, "files": []}, mode, session, busy_box

    # -- helpers ----------------------------------------------------------------------------------------
    def _which(self, session: Session, new: CurrentXray | None, text: str):
        """Auto's question for a pasted report while an X-ray is current: two one-click choices (choose)."""
        if new is not None:
            session.remember(new)
            session.history.append({"role": "user", "content": {"path": new.chat_path}})
        session.history.append({"role": "user", "content": text})
        session.history.append(
            {
                "role": "assistant",
                "content": "This reads as a findings report, and an X-ray is loaded: draw these findings as a "
                "new X-ray, or ask the model about the current one? (Or pick Draw or Ask above and send again.)",
                "options": [{"value": c} for c in CHOICES],
            }
        )
        panel = self.panel(session) if new is not None else (gr.skip(),) * 8
        yield (self._view(session), session, gr.update(value=None), *panel)

    def _panel_if_changed(self, session: Session, new_xray: bool) -> tuple:
        """The side panel's updates when a new X-ray arrived or the shown one expired, else no updates."""
        if not (new_xray or session.panel_stale):
            return (gr.skip(),) * 8
        if session.panel_stale and not new_xray:
            gr.Info(XRAY_EXPIRED.format(ttl=render.duration(self.server.delete_cache_s)))
        session.panel_stale = False
        return self.panel(session)

    def _keep(self) -> set[Path]:
        """Files never to delete as uploads: Gradio's copies of the examples (public, shown to every user)."""
        return self.example_files | {Path(p).resolve() for p in self.files.keep()}

    def _load(self, path: str, session: Session) -> CurrentXray:
        # The model input is made from the full-resolution decode, which is then dropped (imaging.load_image).
        loaded = load_image(path, model_sizes=(self.studio.info.resolution,))
        prepared = self._prepare(loaded)
        chat_path = session.path("upload", "png")
        render.fit(loaded.image).save(chat_path)  # a pixel-only display copy: the upload is never served back
        return CurrentXray(loaded=loaded, prepared=prepared, chat_path=str(chat_path))

    def _start(self, plan: Route, image: PreparedImage | None, sampling: SamplingConfig, cancel):
        """The Studio stream for a plan; Studio validates its inputs here, before generation starts."""
        if plan.task == protocol.TASK_DRAW:
            return self.studio.draw(plan.text, sampling=sampling, cancel=cancel, preview_every=PREVIEW_EVERY)
        if plan.task == protocol.TASK_REPORT:
            return self.studio.describe(image, sampling=sampling, cancel=cancel)
        return self.studio.ask(
            plan.text, image if plan.task == protocol.TASK_VQA else None, sampling=sampling, cancel=cancel
        )

    @staticmethod
    def _cancel(cancel: threading.Event | None) -> threading.Event | None:
        """Stop's event for a stream, or None on ZeroGPU, whose worker process could not see it set."""
        return None if zerogpu.on_zerogpu() else cancel

    def _model_stream(
        self, task: str, text: str, image: PreparedImage | None, sampling: SamplingConfig, cancel
    ):
        """The Studio's update stream for one request (what zerogpu.gpu puts on the GPU)."""
        yield from self._start(Route(task=task, text=text), image, sampling, cancel)

    def _text(self, session: Session, plan: Route, image, sampling, cancel) -> Iterator[None]:
        msg: dict | None = None
        result: Result | None = None
        try:
            for update in self._stream(plan.task, plan.text, image, sampling, self._cancel(cancel)):
                if msg is None:
                    msg = {"role": "assistant", "content": ""}
                    session.history.append(msg)
                msg["content"] = update.text
                result = update.result or result
                yield
        except GenerationCancelled:
            if msg is None:
                session.history.append(
                    {"role": "assistant", "content": "_(stopped before the answer began)_"}
                )
            else:
                msg["content"] = f"{msg['content']} _(stopped)_"
            raise
        if msg is None:
            msg = {"role": "assistant", "content": ""}
            session.history.append(msg)
        msg["content"] = result.text or "_(the model gave an empty answer)_"
        json_path = session.path(f"{self.tag}-answer", "json")
        json_path.write_text(answer_json(result.text, None, result.provenance), encoding="utf-8")
        txt_path = session.path(f"{self.tag}-answer", "txt")
        txt_path.write_text(answer_text(result.text, result.provenance), encoding="utf-8")
        self._details(session, result, [json_path, txt_path])
        yield

    def _details(self, session: Session, result: Result, files: list[Path], note: str = "") -> None:
        """Collapsed provenance under an answer, then its downloads."""
        extra = f"{note}\n\n{DISCLAIMER}" if note else DISCLAIMER
        session.history.append(
            {
                "role": "assistant",
                "content": render.provenance_markdown(result.provenance, result.timings, extra),
                "metadata": {
                    "title": render.provenance_title(result.provenance, result.timings),
                    "status": "done",
                },
            }
        )
        session.history.append(
            {
                "role": "assistant",
                "content": gr.File(value=[str(f) for f in files], label="Downloads", show_label=False),
            }
        )


def _label_answer(messages: list[dict], label: str, choices: list[str]) -> None:
    """Name the mode an answer ran in (`label`) on its details bubbles (one per candidate), with one-click
    redo `choices` under the answer's last message (its downloads)."""
    details = [
        m for m in messages if (m.get("metadata") or {}).get("title", "").startswith(render.DETAILS_TITLE)
    ]
    for msg in details:
        msg["metadata"]["title"] = f"{label} · {msg['metadata']['title']}"
    if details and choices:  # Gradio shows a message's options only under the conversation's last message
        messages[-1]["options"] = [{"value": c} for c in choices]
