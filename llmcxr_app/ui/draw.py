"""The chat's Draw flow: candidates drawn one after the other with progressive previews, each read back by the
model (studio/selfcheck.py), then confidence maps, provenance and downloads.

`Drawer` is a collaborator of ui/chat.py's ChatApp: it receives the app as a `DrawHost`, the Protocol below
that names everything it uses (the studio, the server settings, the download tag, the model stream, the
cancel rule and the details helper).
"""

from __future__ import annotations

import threading
import zipfile
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
from llmcxr_app.studio.reading import read_findings
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
    done: list[tuple[str, str]] = field(default_factory=list)  # (display path, short gallery caption)
    results: list[Result] = field(default_factory=list)  # finished drawings, in drawing order
    checks: list[selfcheck.Agreement] = field(default_factory=list)  # their self-checks, same order

    def show(self, text: str, preview: tuple[str, str] | None = None) -> None:
        """The message: `text`, then the drawing (one) or a grid (several) with `preview` last. Gallery
        captions are cut to one line by Gradio, so the self-check verdicts go in the text, in full."""
        items = self.done + ([preview] if preview else [])
        text = "\n\n".join(t for t in (text, self.verdicts()) if t)
        if not items:
            self.msg["content"] = text
        elif self.n == 1:
            self.msg["content"] = [text, {"path": items[0][0]}]
        else:
            grid = gr.Gallery(
                value=items,
                columns=2,
                height="auto",
                object_fit="contain",
                show_label=False,
                buttons=["fullscreen"],
                elem_classes="candidates",
            )
            self.msg["content"] = [text, grid]

    def verdicts(self) -> str:
        """Each candidate's seed and self-check, one line each (several candidates only)."""
        if self.n == 1 or not self.results:
            return ""
        lines = []
        for i, result in enumerate(self.results):
            check = f": {self.checks[i].summary()}" if i < len(self.checks) else ""
            lines.append(f"- **{i + 1}** (seed {result.provenance.get('seed')}){check}")
        return "\n".join(lines)


def candidates_hint(checks: list[selfcheck.Agreement], max_candidates: int) -> str:
    """A nudge to draw several candidates when the only one drawn disagrees with its own read-back: the
    self-check then names the best-agreeing one, which finds more of the asked findings than one drawing
    does (docs/DEMO_MODEL.md measures it). Empty when it agrees, when several were drawn, or when the
    server allows one candidate only."""
    if len(checks) != 1 or checks[0].matches or max_candidates < 2:
        return ""
    return (
        f" To let the self-check pick the best of up to {max_candidates} drawings, raise"
        f" the {render.CANDIDATES_LABEL} slider in the settings panel."
    )


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
        read_as = reading_note(findings, self.host.studio.info.draw_prompt)
        progress = _Progress({"role": "assistant", "content": f"Drawing {what}… {read_as}"}, n)
        session.history.append(progress.msg)
        for i, seed in enumerate(render.candidate_seeds(sampling.seed, n)):
            yield from self._candidate(session, progress, findings, replace(sampling, seed=seed), i, cancel)
            progress.show(f"Drawn {i + 1} of {n}…" if i + 1 < n else "")
            yield
        verdict = f" {selfcheck.verdict(progress.checks)}" if progress.checks else ""
        hint = candidates_hint(progress.checks, self.host.server.max_candidates)
        progress.show(
            f"{what[0].upper()}{what[1:]} drawn from your findings, marked SYNTHETIC. {read_as}{verdict}{hint} "
            "Confidence map and downloads below."
        )
        self._draw_details(session, progress.results, progress.checks)
        yield

    def _candidate(
        self, session: DrawSession, p: _Progress, findings: str, sampling: SamplingConfig, i: int, cancel: Any
    ) -> Iterator[None]:
        """Draw candidate i (previews row by row), then read it back when the server enables the self-check."""
        label = f"candidate {i + 1} of {p.n}" if p.n > 1 else "the X-ray"
        tag = f"{i + 1}" if p.n > 1 else ""  # the grid's caption: the verdicts are in the text
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
                    preview = (self._save_display(session, update.image, "preview"), f"{tag} drawing…")
                    p.show(f"Drawing {label}: row {update.rows_done} of {grid}…", preview)
                    yield
            shown = self._save_display(session, p.results[-1].image, "synthetic")
            caption = f"{tag} seed {p.results[-1].provenance.get('seed')}".strip()
            if self.host.server.draw_self_check:
                preview = (shown, f"{tag} reading back…")
                p.show(f"Self-check: the model reads {label} back…", preview)
                yield
                p.checks.append(self._read_back(findings, p.results[-1], cancel))
        except GenerationCancelled:
            # A candidate cut short says so (a finished drawing whose read-back was stopped keeps its seed).
            what = "self-check stopped" if len(p.results) > i else "stopped"
            stopped = (preview[0], f"{tag} {what}".strip()) if preview else None
            p.show(f"_(stopped while drawing {label})_", stopped)
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
        """One request's details, however many candidates: a collapsed confidence map (a grid of them for
        several), one collapsed provenance panel (with the self-check's read-backs) and one download group
        (PNG, DICOM and JSON for one drawing; a zip of them for several)."""
        if not results:
            return
        grid = self.host.studio.info.grid
        several = len(results) > 1
        maps = [
            render.confidence_map(r.image, r.probs, grid, f"Candidate {i + 1}" if several else "")
            for i, r in enumerate(results)
        ]
        conf = session.path("confidence-map", "png")
        render.tile(maps).save(conf)
        means = " / ".join(f"{sum(r.probs) / len(r.probs):.2f}" for r in results)
        session.history.append(
            {
                "role": "assistant",
                "content": {"path": str(conf)},  # one item: a list would show one accordion per item
                "metadata": {"title": f"Confidence map · mean {means}", "status": "done"},
            }
        )
        files, notes = [], []
        for i, result in enumerate(results):
            provenance = dict(result.provenance)
            if i < len(checks):
                provenance["self_check"] = checks[i].as_dict()
            files += self._exports(session, result, provenance)
            notes.append(_note(result, checks[i] if i < len(checks) else None, i, len(results), grid))
        if len(results) > 1:  # one link, not three per candidate
            files = [
                _zip(files, session.path(f"{self.host.tag}-synthetic-cxr-{len(results)}-candidates", "zip"))
            ]
        if checks:
            notes.append(f"The self-check compares {selfcheck.COVERED}; other findings are not checked.")
        self.host.add_details(session, _combined(results, checks), files, "\n\n".join(notes))

    def _exports(self, session: DrawSession, result: Result, provenance: dict) -> list[Path]:
        """One drawing's PNG, DICOM SC and JSON, each carrying its provenance (and self-check)."""
        stem = f"{self.host.tag}-synthetic-cxr"
        png = save_png(result.image, session.path(stem, "png"), provenance)
        dcm = save_dicom_sc(result.image, session.path(stem, "dcm"), provenance)
        js = session.path(stem, "json")
        js.write_text(answer_json("", result.codes, provenance, session.request), encoding="utf-8")
        return [png, dcm, js]

    def _save_display(self, session: DrawSession, image: Any, stem: str) -> str:
        path = session.path(stem, "png")
        mark_synthetic(render.display_copy(image)).save(path)
        return str(path)


def reading_note(findings: str, draw_prompt: str) -> str:
    """What the app understood of the findings (studio/reading.py), and whether the model drew from it."""
    summary = read_findings(findings).summary()
    if draw_prompt == "canonical":
        return (
            f"Read as: {summary}. This demo model draws from that reading, written in the template words it "
            "was trained on, not from your own wording."
        )
    return f"Read as (for the self-check): {summary}."


def _combined(results: list[Result], checks: list[selfcheck.Agreement]) -> Result:
    """The request's provenance for its one details panel: the first drawing's, with every candidate's seed
    (and self-check) and the total time."""
    first = results[0]
    if len(results) == 1:
        provenance = dict(first.provenance)
        if checks:
            provenance["self_check"] = checks[0].as_dict()
        return replace(first, provenance=provenance)
    provenance = dict(first.provenance, seed=", ".join(str(r.provenance.get("seed")) for r in results))
    timings = dict(first.timings, total_s=sum(r.timings.get("total_s") or 0.0 for r in results))
    return replace(first, provenance=provenance, timings=timings)


def _note(result: Result, check: selfcheck.Agreement | None, i: int, n: int, grid: int) -> str:
    """The details' lines about one drawing (candidate i of n): its confidence and, when read back, its
    self-check."""
    head = f"**Candidate {i + 1}** (seed {result.provenance.get('seed')}). " if n > 1 else ""
    note = head + render.confidence_summary(result.probs, grid)
    if check is not None:
        note += f"\n\n**Self-check** ({check.summary()}). The model's read-back: _{check.read_back}_"
    return note


def _zip(files: list[Path], out: Path) -> Path:
    """The files in one zip at `out` (stored under their own names, which are unique per session)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, arcname=f.name)
    return out
