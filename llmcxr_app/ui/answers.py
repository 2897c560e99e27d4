"""Text answers in the conversation: a model's update stream shown in one message, its downloads (JSON and
TXT) and its collapsed details. Used by the chat (ui/chat.py) and by Compare (ui/compare.py)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from llmcxr_app.engine.generation import GenerationCancelled
from llmcxr_app.imaging.exports import DISCLAIMER, answer_json, answer_text
from llmcxr_app.studio.types import Result, Update
from llmcxr_app.ui import render

EMPTY_ANSWER = "_(the model gave an empty answer)_"


def stream_into(history: list[dict], updates: Iterator[Update]) -> Generator[None, None, Result]:
    """Show the updates' text in one new assistant message (added with the first update), yielding after
    each; returns the final Result. On Stop the message is marked stopped and GenerationCancelled raised."""
    msg: dict | None = None
    result: Result | None = None
    try:
        for update in updates:
            if msg is None:
                msg = {"role": "assistant", "content": ""}
                history.append(msg)
            msg["content"] = update.text
            result = update.result or result
            yield
    except GenerationCancelled:
        if msg is None:
            history.append({"role": "assistant", "content": "_(stopped before the answer began)_"})
        else:
            msg["content"] = f"{msg['content']} _(stopped)_"
        raise
    if msg is None:
        msg = {"role": "assistant", "content": ""}
        history.append(msg)
    msg["content"] = with_reading(result.text or EMPTY_ANSWER, result.provenance)
    return result


def with_reading(text: str, provenance: dict) -> str:
    """The answer, then the template question the model was asked instead of the user's, when it was
    (Studio.ask's ``asked``; with ``opposite``, what the model replied to it)."""
    asked = provenance.get("asked")
    if not asked:
        return text
    if not provenance.get("opposite"):
        return f'{text}\n\n_Read as "{asked}": this demo model knows only its template questions._'
    reply = provenance.get("model_answer", "")
    if reply == text:  # no clear yes or no to turn round
        return f'{text}\n\n_This is the model\'s reply to "{asked}", asked for your question._'
    return f'{text}\n\n_Read as the opposite of "{asked}", to which the model replied "{reply}"._'


def save_text(session: Any, result: Result, tag: str) -> list[Path]:
    """A text answer's downloads in the session's folder (session.path): JSON and TXT, each recording the
    provenance and the request (session.request); `tag` begins their names."""
    json_path = session.path(f"{tag}-answer", "json")
    json_path.write_text(answer_json(result.text, None, result.provenance, session.request), encoding="utf-8")
    txt_path = session.path(f"{tag}-answer", "txt")
    txt_path.write_text(answer_text(result.text, result.provenance, session.request), encoding="utf-8")
    return [json_path, txt_path]


def add_details(session: Any, result: Result, files: list[Path], note: str = "", by: str = "") -> None:
    """Collapsed provenance under an answer, then its downloads; `by` (a model's label) ends the title."""
    extra = f"{note}\n\n{DISCLAIMER}" if note else DISCLAIMER
    title = render.provenance_title(result.provenance, result.timings)
    if by:
        title = f"{title} · by {by}"
    content = render.provenance_markdown(result.provenance, result.timings, extra)
    session.history.append(
        {"role": "assistant", "content": content, "metadata": {"title": title, "status": "done"}}
    )
    downloads = gr.File(value=[str(f) for f in files], label="Downloads", show_label=False)
    session.history.append({"role": "assistant", "content": downloads})
