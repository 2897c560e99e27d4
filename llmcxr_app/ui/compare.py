"""Compare: one X-ray and one question (or a report) answered by two loaded models side by side.

Shown when the app serves several models (`python app.py --models a,b`): a row above the message box picks
the model that answers Send and the second model Compare asks too. Both answers stream into one message, in
two columns labelled with the model and its family; the two update streams are advanced in turn in this
one generator (no threads: each model keeps its own lock). Stop stops both. A model that fails, or refuses
the request, says so in its own column; the other still answers, and the conversation is kept. Each
answer has its own details and downloads below the columns.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from typing import Any

import gradio as gr

from llmcxr_app import protocol
from llmcxr_app.engine.generation import GenerationCancelled
from llmcxr_app.studio.errors import StudioInputError
from llmcxr_app.studio.types import PreparedImage, Result, Update
from llmcxr_app.ui import answers, render
from llmcxr_app.ui.chat import GENERIC_ERROR, WARMING_UP
from llmcxr_app.ui.inputs import message_parts, sampling_from
from llmcxr_app.ui.models import Models
from llmcxr_app.ui.panel import SKIP_PANEL
from llmcxr_app.ui.records import request_record
from llmcxr_app.ui.routing import Route
from llmcxr_app.ui.uploads import discard_upload

logger = logging.getLogger(__name__)

COMPARE_LABEL = "Compare"  # the mode its details titles name
FAILED = "this model failed while answering: the error is in the server log; the other answer is kept"
SAME_MODEL = "Compare needs two different models: pick another one in “Compare with”."


@dataclass
class ModelRow:
    """The row above the message box when several models are loaded."""

    picker: gr.Dropdown  # the model that answers Send (and Compare's first column)
    other: gr.Dropdown  # Compare's second model
    button: gr.Button  # Compare: send the message to both


def model_row(models: Models) -> ModelRow | None:
    """The picker and Compare controls, or None (nothing on the page) for a single model."""
    if not models.several:
        return None
    with gr.Row(equal_height=True, elem_id="model-row"):
        picker = gr.Dropdown(
            models.names, value=models.names[0], label="Model", elem_id="model-picker", scale=2, min_width=150
        )
        other = gr.Dropdown(
            models.names,
            value=models.names[1],
            label="Compare with",
            elem_id="compare-with",
            scale=2,
            min_width=150,
        )
        button = gr.Button("Compare", elem_id="compare", size="md", scale=1, min_width=100)
    return ModelRow(picker, other, button)


@dataclass
class _Column:
    """One model's side of a comparison."""

    name: str  # the model's short name
    label: str  # "demo (token family)"
    text: str = ""  # the answer so far
    result: Result | None = None  # set once the answer is complete
    note: str = ""  # "stopped", or a refusal or failure shown instead of (or after) the text
    image: PreparedImage | None = None  # the X-ray as this model sees it (None: no X-ray)
    accepted: bool = False  # the model checked the request and takes it
    stream: Iterator[Update] | None = None  # the running answer; None before it starts and once it ends


def columns_html(cols: list[_Column]) -> str:
    """The comparison message: one column per model, its label on top, the text escaped (model output)."""
    parts = []
    for col in cols:
        body = escape(col.text).replace("\n", "<br>")
        if col.result is not None and not col.text:
            body = "<i>(the model gave an empty answer)</i>"
        if col.note:
            body += f" <span class='compare-note'>({escape(col.note)})</span>"
        if not body:
            body = "<i>…</i>"
        parts.append(
            f"<div class='compare-col' data-model='{escape(col.name)}'><div class='compare-head'>"
            f"{escape(col.label)}</div><div class='compare-text'>{body}</div></div>"
        )
    return "<div class='compare'>" + "".join(parts) + "</div>"


def interleave(cols: list[_Column]) -> Iterator[None]:
    """Advance each column's stream by one update in turn until all are done, yielding after each step.
    A stream that is stopped or fails ends with a note in its own column only."""
    while any(c.stream is not None for c in cols):
        for col in cols:
            if col.stream is None:
                continue
            try:
                update = next(col.stream)
            except StopIteration:
                col.stream = None
            except GenerationCancelled:
                col.stream, col.note = None, "stopped"
            except Exception:  # one model's failure: its column says so, the other goes on
                logger.exception("compare: model %s failed", col.name)
                col.stream, col.note = None, FAILED
            else:
                col.text, col.result = update.text, update.result or col.result
            yield


def compare_plan(text: str, has_image: bool) -> Route:
    """What both models are asked: a report of the X-ray (no text), a question about it, or (no X-ray) the
    text as a plain instruction. Compare never draws."""
    if not has_image:
        return Route(task=protocol.TASK_INSTRUCT, text=text)
    return Route(task=protocol.TASK_VQA if text else protocol.TASK_REPORT, text=text)


class Comparer:
    """Compare's event handler, on a ui/chat.py ChatApp (its sessions, models, uploads and streams)."""

    def __init__(self, app: Any):
        self.app = app

    def compare(
        self, message, first, second, temperature, top_p, max_new_tokens, seed, session, request=None
    ):
        """/compare: the message answered by models `first` and `second`, side by side. Yields (chat
        messages, session, textbox, *panel updates) as /chat does; input problems raise gr.Error with the
        text put back in the box, the conversation kept."""
        app = self.app
        session = app._open(session, request)
        session.admitted = False
        app._view(session)
        text, path = message_parts(message)
        try:
            sampling = sampling_from(temperature, top_p, max_new_tokens, seed)
            names = [app.models.name_of(first), app.models.name_of(second)]
            if names[0] == names[1]:
                raise StudioInputError(SAME_MODEL)
            new = app._load(path, session, names[0]) if path else None
            current = new or session.current
            plan = compare_plan(text, current is not None)
            cols = [self._column(n, plan, app.view_for(current, n), sampling) for n in names]
            if not any(c.accepted for c in cols):  # neither model takes it: refused as one message
                raise StudioInputError(" ".join(f"{c.name}: {c.note}" for c in cols))
        except Exception as exc:
            yield from app._setup_failed(exc, session, text, path, "compare setup failed")
        discard_upload(path, app._keep())
        if not app.models.ready():  # a background warm-up still runs: the answers wait for it
            gr.Info(WARMING_UP)
        yield from self._answer(session, new, text, plan, cols, sampling)

    def _column(self, name: str, plan: Route, image: PreparedImage | None, sampling) -> _Column:
        """A column whose model accepted the request (checked now, started later), or one saying why not."""
        col = _Column(name, self.app.models.label(name), image=image)
        try:
            self.app._start(plan, image, sampling, None, name).close()  # validates; never started
        except StudioInputError as exc:
            col.note = str(exc)
            return col
        col.accepted = True
        return col

    def _answer(self, session, new, text: str, plan: Route, cols: list[_Column], sampling) -> Iterator[tuple]:
        app = self.app
        session.cancel = cancel = threading.Event()  # Stop sets it: both streams end at their next token
        session.idle.clear()
        try:
            if new is not None:
                session.remember(new)
                session.history.append({"role": "user", "content": {"path": new.chat_path}})
                for warning in new.loaded.warnings:
                    gr.Warning(warning)
            panel = app._panel_if_changed(session, new is not None)
            if text:
                session.history.append({"role": "user", "content": text})
            session.request = request_record(session.current, plan, COMPARE_LABEL)
            stop = app.cancel_event(cancel)
            for col in (c for c in cols if c.accepted):
                col.stream = app.stream(plan.task, plan.text, col.image, sampling, stop, col.name)
            msg = {"role": "assistant", "content": columns_html(cols)}
            session.history.append(msg)
            yield (app._view(session), session, gr.update(value=None), *panel)
            for _ in interleave(cols):
                msg["content"] = columns_html(cols)
                yield (app._view(session), session, gr.skip(), *SKIP_PANEL)
            self._details(session, cols)
            yield (app._view(session), session, gr.skip(), *SKIP_PANEL)
        except Exception:  # not one model's failure (interleave keeps those in their column): the app's
            logger.exception("compare failed")
            session.history.append({"role": "assistant", "content": "_(interrupted by an error)_"})
            yield (app._view(session), session, gr.update(**render.IDLE_BOX), *SKIP_PANEL)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from None
        finally:  # also when Gradio closes this generator (Stop, a closed tab): no model keeps its lock
            cancel.set()
            for col in cols:
                if col.stream is not None:
                    col.stream.close()
            session.idle.set()

    def _details(self, session, cols: list[_Column]) -> None:
        """Each finished answer's details and downloads (named after its model), titled with the mode."""
        start = len(session.history)
        for col in cols:
            if col.result is None:
                continue
            tag = f"{self.app.tag}-{re.sub(r'[^A-Za-z0-9._-]+', '-', col.name)}"
            files = answers.save_text(session, col.result, tag)
            answers.add_details(session, col.result, files, by=col.label)
        render.label_answer(session.history[start:], COMPARE_LABEL, [])

    def wire(self, row: ModelRow, stage: dict, settings: list, outputs: list, model_event: dict, idle) -> Any:
        """Compare's events: the button stages the box's message as Send does (`stage`: that event's
        arguments), then /compare answers it (message, first, second, temperature, top_p, max_new_tokens,
        seed); the box gets Send back after. Returns the answering event, for Stop to cancel."""
        staged, box, session = stage["outputs"][0], stage["outputs"][1], stage["outputs"][3]
        inputs = [staged, row.picker, row.other, *settings[:4], session]
        row.picker.change(
            self._other_than, [row.picker, row.other], row.other, api_visibility="private", queue=False
        )
        staging = row.button.click(**stage)
        answer = staging.success(
            self.compare, inputs, outputs, api_name="compare", validator=self.app.admit, **model_event
        )
        answer.then(lambda: idle, None, box, api_visibility="private", queue=False, show_progress="hidden")
        return answer

    def _other_than(self, picked: str, other: str):
        """Compare with: another model than the one just picked (a model is never compared with itself)."""
        if other != picked:
            return gr.skip()
        return gr.update(value=next(n for n in self.app.models.names if n != picked))
