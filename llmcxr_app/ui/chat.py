"""The chat's event handlers: route a message, stream the Studio's answer into the conversation.

All per-user data lives in a `Session` held in a gr.State (never in module globals), so one user's
conversation and files are never shown to another (ui/sessions.py). ui/app.py lays out the page and wires
these handlers.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from llmcxr_app import protocol, redact
from llmcxr_app.config import SamplingConfig, ServerConfig
from llmcxr_app.engine.generation import GenerationCancelled
from llmcxr_app.imaging.images import ImageLoadError, load_image
from llmcxr_app.studio.facade import PreparedImage, Result, StudioInputError
from llmcxr_app.studio.types import ChatModel
from llmcxr_app.ui import answers, render, zerogpu
from llmcxr_app.ui.draw import Drawer
from llmcxr_app.ui.inputs import message_parts, sampling_from
from llmcxr_app.ui.models import ModelHost, Models, cannot_draw
from llmcxr_app.ui.panel import SKIP_PANEL, panel_updates
from llmcxr_app.ui.records import read_upload, request_record
from llmcxr_app.ui.routing import CHOICES, TASK_AMBIGUOUS, Route, chosen_mode, mode_label, redo_choices, route
from llmcxr_app.ui.sessions import (
    EVICTED,
    VIEW_MARGIN_S,
    XRAY_EXPIRED,
    CurrentXray,
    Session,
    SessionLimitError,
    Sessions,
    client_address,
)
from llmcxr_app.ui.sweeper import attach
from llmcxr_app.ui.uploads import discard_upload, refused

logger = logging.getLogger(__name__)

PREVIEW_EVERY = 2  # grid rows between progressive previews of a drawing
STOP_WAIT_S = 5.0  # how long Stop waits for the generation thread to acknowledge
GENERIC_ERROR = "Something went wrong while generating; the conversation is kept. Please try again."
WARMING_UP = (
    "The model is still warming up after the server started (once per start); your answer begins as soon as "
    "it is ready, in a few seconds."
)
QUEUE_FULL = (
    "The model is busy: {n} requests are already waiting for it, as many as this server holds. Your message "
    "was not sent and is still in the box: please send it again in a minute or two."
)


@dataclass(frozen=True)
class _Request:
    """One message, decoded, routed and checked by the Studio: what `ChatApp._answer` runs."""

    plan: Route  # the task and the text the model gets
    sampling: SamplingConfig  # the user's generation settings
    n: int  # Draw candidates
    new: CurrentXray | None  # the X-ray attached to this message, decoded
    image: PreparedImage | None  # the model's view of the X-ray the answer is about (new or current)
    first: Iterator | None  # the Studio's validated, not yet started stream (None when ambiguous)
    model: str = ""  # the short name of the model that answers (ui/models.py)


class ChatApp:
    """Event handlers bound to the loaded models (ui/models.py: one, or several with a picker). Holds no
    per-user data (that is in the Session argument)."""

    def __init__(self, models: ChatModel | Mapping[str, ChatModel], server: ServerConfig):
        redact.install()  # no header value of an upload may reach the log (idempotent; app.py does it too)
        self.models = Models.of(models)
        self.studio = self.models.get(None)  # the default model
        self.server = server
        # The model's work, on the GPU on ZeroGPU (ui/zerogpu.py): there it runs in a worker process, so these
        # take and yield only picklable values and cannot see Stop's threading.Event (Stop still ends the
        # event for the user). Elsewhere they are the plain calls.
        self._prepare = zerogpu.gpu(30)(lambda name, loaded: self.models.get(name).prepare(loaded))
        self.stream = zerogpu.gpu()(self._model_stream)
        self.tag = "llmcxr-demo" if self.models.any_demo else "llmcxr"  # every download name says "demo"
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

    def admit(self, message, *inputs):
        """/chat's (and /compare's) validator, run as a request asks to join the queue: refuse it with
        QUEUE_FULL when the queue holds queue_size requests (a message the Send button staged passed this
        check already). `inputs`: the event's other inputs, the session among them."""
        session = next((v for v in inputs if isinstance(v, Session)), None)
        ok = (session is not None and session.admitted) or not self._queue_full()
        first = gr.validate(ok, "" if ok else QUEUE_FULL.format(n=self.server.queue_size))
        return [first] + [gr.validate(True, "")] * len(inputs)

    # -- side panel -------------------------------------------------------------------------------------
    def panel(self, session: Session | None) -> tuple:
        """The side panel's nine updates for the session's current X-ray (ui/panel.py)."""
        current = session.current if session else None
        return panel_updates(current, self.models.get(current.model if current else None).info)

    # -- events -----------------------------------------------------------------------------------------
    def stage(self, message, session: Session | None, request: gr.Request | None = None):
        """Show the user's message at once (before the queue), clear the box, switch it to its Stop button.
        A full queue, the session cap or an empty message raise gr.Error before any output: the text and
        attachment stay in the box and Send stays, so the user can send again."""
        if self._queue_full():
            raise gr.Error(QUEUE_FULL.format(n=self.server.queue_size))
        session = self._open(session, request)
        if not session.idle.is_set():
            raise gr.Error(
                "The previous answer is still being generated: wait for it or press Stop.",
                print_exception=False,
            )
        text, path = message_parts(message)
        if not text and not path:  # refused before anything changes: the conversation and Send stay
            raise gr.Error(render.EMPTY_MESSAGE, print_exception=False)
        session.admitted = True
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
        if session is None:
            return gr.skip(), gr.update(**render.IDLE_BOX)
        if session.cancel is not None:
            session.cancel.set()
        session.idle.wait(STOP_WAIT_S)
        return self._view(session), gr.update(**render.IDLE_BOX)

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
        model: str | None = None,
        guidance: float | None = None,
        guide_away_from: str | None = None,
        request: gr.Request | None = None,
    ):
        """Answer one message: route it (see ui/routing.py), stream the answer into the conversation.

        `model`: the picker's short name (None: the default model); `guidance`, `guide_away_from`: the
        drawings' (SamplingConfig; None: the model's own, SamplingConfig.guide_away_from). Yields (chat messages, session,
        textbox, *panel updates). Input problems raise gr.Error with their message and put the text back in
        the box; the conversation is never lost.
        """
        session = self._open(session, request)
        session.admitted = False
        self._view(session)  # expired files become notes before anything is shown
        text, path = message_parts(message)
        try:
            sampling = sampling_from(temperature, top_p, max_new_tokens, seed, guidance, guide_away_from)
            name = self.models.name_of(model)
            req = self._plan(session, str(mode or "Auto"), text, path, sampling, candidates, name)
        except Exception as exc:
            yield from self._setup_failed(exc, session, text, path, "request setup failed")
        discard_upload(path, self._keep())  # decoded: only the app's display copy and model input are kept
        if req.plan.task == TASK_AMBIGUOUS:  # a pasted report with an X-ray: ask which is meant
            yield from self._which(session, req.new, text)
            return
        if req.new is not None:
            session.remember(req.new)
            session.history.append({"role": "user", "content": {"path": req.new.chat_path}})
            for w in req.new.loaded.warnings:
                gr.Warning(w)
        if text:
            session.history.append({"role": "user", "content": text})
        yield from self._answer(session, req, mode_label(str(mode or "Auto"), req.plan.task), bool(text))

    def _setup_failed(self, exc: Exception, session: Session, text: str, path: str | None, what: str):
        """A request refused before any answer (/chat and /compare): the conversation as it was, the text
        (and a readable upload) back in the box, Send back; then gr.Error with the message for the user.
        Called inside the `except` block, so a real failure logs its whole traceback (redacted)."""
        if isinstance(exc, (ImageLoadError, StudioInputError)):
            box = gr.update(value=refused(exc, text, path, self._keep()), **render.IDLE_BOX)
            message = str(exc)
        else:
            logger.exception(what)
            discard_upload(path, self._keep())
            box = gr.update(value={"text": text, "files": []}, **render.IDLE_BOX)
            message = GENERIC_ERROR
        yield (self._view(session), session, box, *SKIP_PANEL)
        raise gr.Error(message, print_exception=False) from None

    def _plan(self, session: Session, mode: str, text: str, path, sampling: SamplingConfig, candidates, name):
        """Decode the upload, route the message and let the model check it (before anything is shown)."""
        n = max(1, min(int(candidates or 1), self.server.max_candidates))
        new = self._load(path, session, name) if path else None
        plan = route(mode, text, new is not None, new is not None or session.current is not None)
        if plan.task == TASK_AMBIGUOUS:
            return _Request(plan, sampling, n, new, None, None, name)
        # Several models: say which can draw (one model that cannot refuses in its own words, in _start).
        if (
            plan.task == protocol.TASK_DRAW
            and self.models.several
            and not self.models.get(name).info.can_draw
        ):
            raise StudioInputError(cannot_draw(name, self.models.get(name).info))
        image = self.view_for(new or session.current, name)
        first = self._start(plan, image, sampling, None, name)  # validates the request before it is shown
        return _Request(plan, sampling, n, new, image, first, name)

    def view_for(self, current: CurrentXray | None, name: str) -> PreparedImage | None:
        """The X-ray as model `name` sees it: prepared by that model once, then kept with the X-ray."""
        if current is None:
            return None
        if name == current.model:
            return current.prepared
        if name not in current.views:
            current.views[name] = self._prepare(name, current.loaded)
        return current.views[name]

    def _answer(self, session: Session, req: _Request, label: str, typed: bool):
        """Stream the planned request's answer into the conversation, then label it with its mode."""
        session.cancel = cancel = threading.Event()
        session.idle.clear()
        session.request = request_record(session.current, req.plan, label)  # for the downloads
        if not self.models.get(req.model).ready.is_set():  # its background warm-up: the request waits for it
            gr.Info(WARMING_UP)
        try:
            panel = self._panel_if_changed(session, req.new is not None)
            yield (self._view(session), session, gr.update(value=None), *panel)
            req.first.close()  # the validation stream never ran; real streams below carry the cancel event
            if req.plan.task == protocol.TASK_DRAW:
                drawer = Drawer(ModelHost(self, req.model))  # the Draw flow on the request's model
                steps = drawer.draw(session, req.plan.text, req.sampling, req.n, cancel)
            else:
                steps = self._text(session, req.plan, req.image, req.sampling, cancel, req.model)
            start = len(session.history)
            for _ in steps:
                yield (self._view(session), session, gr.skip(), *SKIP_PANEL)
            choices = redo_choices(req.plan.task, session.current is not None, typed)
            render.label_answer(session.history[start:], label, choices)
            yield (self._view(session), session, gr.skip(), *SKIP_PANEL)
        except GenerationCancelled:
            session.idle.set()
            yield (self._view(session), session, gr.skip(), *SKIP_PANEL)
        except Exception:  # a real failure: the whole traceback (redact.py keeps file content out of it)
            logger.exception("generation failed")
            session.history.append({"role": "assistant", "content": "_(interrupted by an error)_"})
            session.idle.set()
            yield (self._view(session), session, gr.update(**render.IDLE_BOX), *SKIP_PANEL)
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
        panel = self.panel(session) if new is not None else SKIP_PANEL
        yield (self._view(session), session, gr.update(value=None), *panel)

    def _panel_if_changed(self, session: Session, new_xray: bool) -> tuple:
        """The side panel's updates when a new X-ray arrived or the shown one expired, else no updates."""
        if not (new_xray or session.panel_stale):
            return SKIP_PANEL
        if session.panel_stale and not new_xray:
            gr.Info(XRAY_EXPIRED.format(ttl=render.duration(self.server.delete_cache_s)))
        session.panel_stale = False
        return self.panel(session)

    def _keep(self) -> set[Path]:
        """Files never to delete as uploads: Gradio's copies of the examples (public, shown to every user),
        which ui.app.build hands the sweeper as `files.keep`."""
        return {Path(p).resolve() for p in self.files.keep()}

    def _load(self, path: str, session: Session, name: str) -> CurrentXray:
        # Each model's input is made from the full-resolution decode, which is then dropped (load_image).
        data = read_upload(path)
        loaded = load_image(data, model_sizes=self.models.resolutions)
        prepared = self._prepare(name, loaded)
        chat_path = session.path("upload", "png")
        render.fit(loaded.image).save(chat_path)  # a pixel-only display copy: the upload is never served back
        # The name goes only into this user's own downloads (a DICOM's name may be a UID or a patient's name).
        return CurrentXray(
            loaded=loaded,
            prepared=prepared,
            chat_path=str(chat_path),
            name=Path(path).name,
            sha256=hashlib.sha256(data).hexdigest(),
            model=name,
        )

    def _start(self, plan: Route, image: PreparedImage | None, sampling: SamplingConfig, cancel, name: str):
        """Model `name`'s stream for a plan; the model validates its inputs here, before generation starts."""
        model = self.models.get(name)
        if plan.task == protocol.TASK_DRAW:
            return model.draw(plan.text, sampling=sampling, cancel=cancel, preview_every=PREVIEW_EVERY)
        if plan.task == protocol.TASK_REPORT:
            return model.describe(image, sampling=sampling, cancel=cancel)
        return model.ask(
            plan.text, image if plan.task == protocol.TASK_VQA else None, sampling=sampling, cancel=cancel
        )

    def _text(self, session: Session, plan: Route, image, sampling, cancel, name: str) -> Iterator[None]:
        """A text answer streamed into one new message, then its details and downloads."""
        updates = self.stream(plan.task, plan.text, image, sampling, self.cancel_event(cancel), name)
        result = yield from answers.stream_into(session.history, updates)
        self.add_details(session, result, self.save_text(session, result), model=name)
        yield

    @staticmethod
    def cancel_event(cancel: threading.Event | None) -> threading.Event | None:
        """Stop's event for a stream, or None on ZeroGPU, whose worker process could not see it set."""
        return None if zerogpu.on_zerogpu() else cancel

    def _model_stream(
        self, task: str, text: str, image: PreparedImage | None, sampling: SamplingConfig, cancel, name=""
    ):
        """Model `name`'s update stream for one request (what zerogpu.gpu puts on the GPU)."""
        yield from self._start(
            Route(task=task, text=text), image, sampling, cancel, self.models.name_of(name)
        )

    def save_text(self, session: Session, result: Result) -> list[Path]:
        """A text answer's downloads (JSON and TXT, each with its provenance) in the session's folder."""
        return answers.save_text(session, result, self.tag)

    def add_details(self, session: Session, result: Result, files: list[Path], note="", model="") -> None:
        """Collapsed provenance under an answer, then its downloads; with several models loaded the title
        names the one that answered (`model`, its short name)."""
        answers.add_details(
            session, result, files, note, self.models.label(model) if self.models.several else ""
        )
