"""The chat's Draw flow: candidates drawn one after the other with progressive previews, each read back by the
model (selfcheck.py), then confidence maps, provenance and downloads.

A mixin of ui_chat.ChatApp (it uses the app's studio, server settings, model stream and details helper).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import gradio as gr

from llmcxr_app import protocol
from llmcxr_app.config import SamplingConfig
from llmcxr_app.engine.generation import GenerationCancelled
from llmcxr_app.imaging.exports import answer_json, mark_synthetic, save_dicom_sc, save_png
from llmcxr_app.studio import selfcheck
from llmcxr_app.studio.facade import Result, Studio
from llmcxr_app.ui import render


class DrawFlow:
    """Draw handlers of ChatApp; `self` is the ChatApp."""

    def _draw(self, session, findings: str, sampling: SamplingConfig, n: int, cancel) -> Iterator[None]:
        """Draw n candidates one after the other; each shows a preview that sharpens row by row, then the
        model's read-back of it (self-check) when the server enables it."""
        grid = self.studio.info.grid
        done: list[tuple[str, str]] = []  # (display path, gallery caption) of finished candidates
        msg = {
            "role": "assistant",
            "content": f"Drawing {'a synthetic X-ray' if n == 1 else f'{n} synthetic X-rays'}…",
        }
        session.history.append(msg)
        results: list[Result] = []
        checks: list[selfcheck.Agreement] = []

        def show(text: str, preview: tuple[str, str] | None = None) -> None:
            items = done + ([preview] if preview else [])
            if not items:
                msg["content"] = text
            elif n == 1:
                msg["content"] = [text, {"path": items[0][0]}]
            else:
                msg["content"] = [text, gr.Gallery(value=items, columns=2, height="auto", show_label=False)]

        for i, seed in enumerate(render.candidate_seeds(sampling.seed, n)):
            label = f"candidate {i + 1} of {n}" if n > 1 else "the X-ray"
            preview = None
            try:
                for update in self._stream(
                    protocol.TASK_DRAW, findings, None, replace(sampling, seed=seed), self._cancel(cancel)
                ):
                    if update.result is not None:
                        results.append(update.result)
                    elif update.image is not None:
                        preview = (self._save_display(session, update.image, "preview"), f"{i + 1}: drawing")
                        show(f"Drawing {label}: row {update.rows_done} of {grid}…", preview)
                        yield
                shown = self._save_display(session, results[-1].image, "synthetic")
                caption = f"{i + 1}: seed {results[-1].provenance.get('seed')}"
                if self.server.draw_self_check:
                    preview = (shown, caption)
                    show(f"Self-check: the model reads {label} back…", preview)
                    yield
                    checks.append(self._read_back(findings, results[-1], cancel))
                    caption += f" · {checks[-1].summary()}"
            except GenerationCancelled:
                show(f"_(stopped while drawing {label})_", preview)
                self._draw_details(session, results, checks)
                raise
            done.append((shown, caption))
            show(f"Drawn {i + 1} of {n}…" if i + 1 < n else "")
            yield
        what = "A synthetic X-ray" if n == 1 else f"{n} synthetic X-rays"
        verdict = f" {selfcheck.verdict(checks)}" if checks else ""
        show(
            f"{what} drawn from your findings, marked SYNTHETIC.{verdict} Confidence map and downloads below."
        )
        self._draw_details(session, results, checks)
        yield

    def _read_back(self, findings: str, result: Result, cancel) -> selfcheck.Agreement:
        """The model's greedy report of its own drawing, compared with the findings (selfcheck.compare)."""
        stream = self._stream(
            protocol.TASK_REPORT,
            "",
            selfcheck.as_prepared(result),
            selfcheck.READ_BACK_SAMPLING,
            self._cancel(cancel),
        )
        return selfcheck.compare(findings, Studio.finish(stream).text)

    def _draw_details(self, session, results: list[Result], checks: list[selfcheck.Agreement]) -> None:
        """Per finished drawing: a collapsed confidence map, collapsed provenance (with the self-check's
        read-back), downloads whose metadata carry the self-check too."""
        grid = self.studio.info.grid
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
            png = save_png(result.image, session.path(f"{self.tag}-synthetic-cxr", "png"), provenance)
            dcm = save_dicom_sc(result.image, session.path(f"{self.tag}-synthetic-cxr", "dcm"), provenance)
            js = session.path(f"{self.tag}-synthetic-cxr", "json")
            js.write_text(answer_json("", result.codes, provenance), encoding="utf-8")
            self._details(session, replace(result, provenance=provenance), [png, dcm, js], note)

    def _save_display(self, session, image, stem: str) -> str:
        path = session.path(stem, "png")
        mark_synthetic(render.display_copy(image)).save(path)
        return str(path)
