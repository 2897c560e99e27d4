"""The chat's Draw flow: candidates drawn one after the other with progressive previews, each read back by the
model (studio/selfcheck.py), then confidence maps, provenance and downloads.

`Drawer` is a collaborator of ui/chat.py's ChatApp: it receives the app as a `DrawHost`, the Protocol below
that names everything it uses (the studio, the server settings, the download tag, the model stream, the
cancel rule and the details helper).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import gradio as gr

from llmcxr_app import protocol
from llmcxr_app.config import SamplingConfig, ServerConfig
from llmcxr_app.engine.generation import GenerationCancelled
from llmcxr_app.imaging.exports import answer_json, mark_synthetic, save_dicom_sc, save_png
from llmcxr_app.studio import selfcheck
from llmcxr_app.studio.facade import PreparedImage, Result, Studio, Update
from llmcxr_app.ui import render


class DrawSession(Protocol):
    """The per-browser session a drawing is added to (ui/chat.py's Session)."""

    history: list[dict]  # the chat messages
    request: dict  # the request's record for its downloads (ui/records.py)

    def path(self, stem: str, ext: str) -> Path: ...  # a new file in the session's private folder


class DrawHost(Protocol):
    """What the Draw flow uses of the chat app (ui/chat.py's ChatApp)."""

    studio: Studio  # for the grid size
    server: ServerConfig  # draw_self_check
    tag: str  # download name prefix ("llmcxr" or "llmcxr-demo")

    def stream(
        self,
        task: str,
        text: str,
        image: PreparedImage | None,
        sampling: SamplingConfig,
        cancel: threading.Event | None,
    ) -> Iterator[Update]: ...  # the Studio's update stream (on the GPU under ZeroGPU)

    def cancel_event(self, cancel: threading.Event | None) -> threading.Event | None: ...

    def add_details(self, session: Any, result: Result, files: list[Path], note: str = "") -> None: ...


@dataclass
class _Progress:
    """One draw request: its chat message and the candidates finished so far."""

    msg: dict  # the assistant message being updated
    n: int  # candidates requested
    done: list[tuple[str, str]] = field(default_factory=list)  # (display path, gallery caption)
    results: list[Result] = field(default_factory=list)  # finished drawings, in drawing order
    checks: list[selfcheck.Agreement] = field(default_factory=list)  # their self-checks, same order

    def show(self, text: str, preview: tuple[str, str] | None = None) -> None:
        items = self.done + ([preview] if preview else [])
        if not items:
            self.msg["content"] = text
        elif self.n == 1:
            self.msg["content"] = [text, {"path": items[0][0]}]
        else:
            self.msg["content"] = [text, gr.Gallery(value=items, columns=2, height="auto", show_label=False)]


class Drawer:
    """Draws for one chat app, its host."""

    def __init__(self, host: DrawHost):
        self.host = host

    def draw(
        self, session: DrawSession, findings: str, sampling: SamplingConfig, n: int, cancel: Any
    ) -> Iterator[None]:
        """Draw n candidates one after the other; each shows a preview that sharpens row by row, then the
        model's read-back of it (self-check) when the server enables it. Yields after each visible change."""
        what = "a synthetic X-ray" if n == 1 else f"{n} synthetic X-rays"
        progress = _Progress({"role": "assistant", "content": f"Drawing {what}…"}, n)
        session.history.append(progress.msg)
        for i, seed in enumerate(render.candidate_seeds(sampling.seed, n)):
            yield from self._candidate(session, progress, findings, replace(sampling, seed=seed), i, cancel)
            progress.show(f"Drawn {i + 1} of {n}…" if i + 1 < n else "")
            yield
        verdict = f" {selfcheck.verdict(progress.checks)}" if progress.checks else ""
        progress.show(
            f"{what[0].upper()}{what[1:]} drawn from your findings, marked SYNTHETIC.{verdict} Confidence map "
            "and downloads below."
        )
        self._draw_details(session, progress.results, progress.checks)
        yield

    def _candidate(
        self, session: DrawSession, p: _Progress, findings: str, sampling: SamplingConfig, i: int, cancel: Any
    ) -> Iterator[None]:
        """Draw candidate i (previews row by row), then read it back when the server enables the self-check."""
        label = f"candidate {i + 1} of {p.n}" if p.n > 1 else "the X-ray"
        grid = self.host.studio.info.grid
        preview = None
        try:
            stream = self.host.stream(
                protocol.TASK_DRAW, findings, None, sampling, self.host.cancel_event(cancel)
            )
            for update in stream:
                if update.result is not None:
                    p.results.append(update.result)
                elif update.image is not None:
                    preview = (self._save_display(session, update.image, "preview"), f"{i + 1}: drawing")
                    p.show(f"Drawing {label}: row {update.rows_done} of {grid}…", preview)
                    yield
            shown = self._save_display(session, p.results[-1].image, "synthetic")
            caption = f"{i + 1}: seed {p.results[-1].provenance.get('seed')}"
            if self.host.server.draw_self_check:
                preview = (shown, caption)
                p.show(f"Self-check: the model reads {label} back…", preview)
                yield
                p.checks.append(self._read_back(findings, p.results[-1], cancel))
                caption += f" · {p.checks[-1].summary()}"
        except GenerationCancelled:
            p.show(f"_(stopped while drawing {label})_", preview)
            self._draw_details(session, p.results, p.checks)
            raise
        p.done.append((shown, caption))

    def _read_back(self, findings: str, result: Result, cancel: Any) -> selfcheck.Agreement:
        """The model's greedy report of its own drawing, compared with the findings (selfcheck.compare)."""
        stream = self.host.stream(
            protocol.TASK_REPORT,
            "",
            selfcheck.as_prepared(result),
            selfcheck.READ_BACK_SAMPLING,
            self.host.cancel_event(cancel),
        )
        return selfcheck.compare(findings, Studio.finish(stream).text)

    def _draw_details(
        self, session: DrawSession, results: list[Result], checks: list[selfcheck.Agreement]
    ) -> None:
        """Per finished drawing: a collapsed confidence map, collapsed provenance (with the self-check's
        read-back), downloads whose metadata carry the self-check too."""
        grid = self.host.studio.info.grid
        for i, result in enumerate(results):
            suffix = f" · candidate {i + 1}" if len(results) > 1 else ""
            conf = session.path("confidence-map", "png")
            render.confidence_map(result.image, result.probs, grid).save(conf)
            mean = sum(result.probs) / len(result.probs)
            session.history.append(
                {
                    "role": "assistant",
                    "content": {"path": str(conf)},  # one item: a list would show one accordion per item
                    "metadata": {"title": f"Confidence map{suffix} · mean {mean:.2f}", "status": "done"},
                }
            )
            provenance = dict(result.provenance)
            note = render.confidence_summary(result.probs, grid)
            if i < len(checks):
                provenance["self_check"] = checks[i].as_dict()
                note += (
                    f"\n\n**Self-check** ({checks[i].summary()}). The model's read-back: _{checks[i].read_back}_"
                    f"\n\nThe self-check compares {selfcheck.COVERED}; other findings are not checked."
                )
            png = save_png(result.image, session.path(f"{self.host.tag}-synthetic-cxr", "png"), provenance)
            dcm = save_dicom_sc(
                result.image, session.path(f"{self.host.tag}-synthetic-cxr", "dcm"), provenance
            )
            js = session.path(f"{self.host.tag}-synthetic-cxr", "json")
            js.write_text(answer_json("", result.codes, provenance, session.request), encoding="utf-8")
            self.host.add_details(session, replace(result, provenance=provenance), [png, dcm, js], note)

    def _save_display(self, session: DrawSession, image: Any, stem: str) -> str:
        path = session.path(stem, "png")
        mark_synthetic(render.display_copy(image)).save(path)
        return str(path)
