"""The side panel: the current X-ray, what the model sees of it, its warnings and (DICOM) its histogram."""

from __future__ import annotations

import gradio as gr

from llmcxr_app.studio.types import StudioInfo
from llmcxr_app.ui import render
from llmcxr_app.ui.sessions import CurrentXray

# The panel's components, in the order every handler returns their updates: empty note, overview image,
# summary, warnings, model input, reconstruction, histogram, forget button.
PANEL_SIZE = 8
SKIP_PANEL = (gr.skip(),) * PANEL_SIZE  # no change to any of them
MODEL_VIEW_SIDE = 256  # px, the model-input and reconstruction previews


def _empty() -> tuple:
    """No X-ray: only the note saying how to attach one."""
    return (
        gr.update(visible=True),
        gr.update(value=None, visible=False),
        gr.update(value=""),
        gr.update(value="", visible=False),
        gr.update(value=None),
        gr.update(value=None),
        gr.update(value=None, visible=False),
        gr.update(visible=False),
    )


def panel_updates(current: CurrentXray | None, info: StudioInfo) -> tuple:
    """The eight updates showing `current` (or the empty panel), every image stripped to its pixels."""
    if current is None:
        return _empty()
    loaded, prep = current.loaded, current.prepared
    hist = None
    if loaded.histogram is not None:
        hist = render.histogram_plot(*loaded.histogram, loaded.window)
    warn = render.warnings_markdown(loaded.warnings)
    return (
        gr.update(visible=False),
        gr.update(value=render.crop_overlay(loaded.image, prep.crop_box, loaded.size), visible=True),
        gr.update(value=render.image_summary(loaded, prep.crop_box, info.resolution, info.grid)),
        gr.update(value=warn, visible=bool(warn)),
        gr.update(value=render.display_copy(prep.model_input, MODEL_VIEW_SIDE)),
        gr.update(value=render.display_copy(prep.reconstruction, MODEL_VIEW_SIDE)),
        gr.update(value=hist, visible=hist is not None),
        gr.update(visible=True),
    )
