"""The side panel: the current X-ray, what the model sees of it, its warnings and (DICOM) its histogram; and
the compact strip above the message box (a thumbnail, the file's name and size) that a phone shows instead."""

from __future__ import annotations

import base64
import io
from html import escape

import gradio as gr

from llmcxr_app.redact import strip_metadata
from llmcxr_app.studio.types import StudioInfo
from llmcxr_app.ui import render
from llmcxr_app.ui.sessions import CurrentXray

# The panel's components, in the order every handler returns their updates: empty note, overview image,
# summary, warnings, model input, reconstruction, histogram, strip above the box, forget button.
PANEL_SIZE = 9
SKIP_PANEL = (gr.skip(),) * PANEL_SIZE  # no change to any of them
MODEL_VIEW_SIDE = 256  # px, the model-input and reconstruction previews
THUMB_SIDE = 96  # px, longest side of the strip's thumbnail (shown at 48 CSS px: sharp on a 2x phone screen)


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
        gr.update(value="", visible=False),
        gr.update(visible=False),
    )


def strip_html(current: CurrentXray) -> str:
    """The strip above the message box: the X-ray as a small inline PNG (pixels only, no file written), its
    name, format and size in pixels, and a link down to the full panel."""
    thumb = current.loaded.image.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buf = io.BytesIO()
    strip_metadata(thumb.convert("L")).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    width, height = current.loaded.size
    name = escape(current.name or "uploaded image")
    return (
        f"<a class='xray-strip' href='#side' title='Show the current X-ray panel'>"
        f"<img src='data:image/png;base64,{data}' alt='Current X-ray: {name}'>"
        f"<span><b>Current X-ray</b> <span class='xray-name'>{name}</span><br>"
        f"{escape(current.loaded.source_format)} · {width} × {height} px · details ↓</span></a>"
    )


def panel_updates(current: CurrentXray | None, info: StudioInfo) -> tuple:
    """The nine updates showing `current` (or the empty panel), every image stripped to its pixels."""
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
        gr.update(value=render.display_copy(prep.model_input, MODEL_VIEW_SIDE), label=_input_label(info)),
        # An adapter model has no image tokens: nothing is reconstructed, its input is the whole story.
        gr.update(
            value=render.display_copy(prep.reconstruction, MODEL_VIEW_SIDE)
            if info.family == "token"
            else None,
            visible=info.family == "token",
        ),
        gr.update(value=hist, visible=hist is not None),
        gr.update(value=strip_html(current), visible=True),
        gr.update(visible=True),
    )


def _input_label(info: StudioInfo) -> str:
    return "Model input (VQ-GAN)" if info.family == "token" else "Vision tower input"


def xray_panel() -> list:
    """The side panel's components (laid out where called), in panel_updates' order less the strip (the chat
    column's): the current X-ray, its summary and warnings, the model's view and (DICOM) its histogram."""
    gr.Markdown("### Current X-ray", elem_classes="panel-title")
    empty = gr.Markdown(
        "No X-ray yet. Attach one with the paperclip; follow-up questions will refer to it.",
        elem_classes="panel-empty",
    )
    overview = gr.Image(
        label="Current X-ray",
        show_label=False,
        type="pil",
        format="png",
        interactive=False,
        visible=False,
        height=300,
        buttons=["fullscreen"],
        elem_id="overview",
    )
    summary = gr.Markdown(elem_classes="panel-text")
    warn = gr.Markdown(visible=False, elem_classes="image-warnings")
    with gr.Accordion("Model view: what the model receives", open=False, elem_id="model-view"):
        gr.Markdown(
            "LLM-CXR (token family): the centre crop the VQ-GAN encodes, and its reconstruction from the "
            "image tokens, which is what the LLM actually receives. An adapter model: the crop its vision "
            "tower receives (it has no image tokens to reconstruct).",
            elem_classes="panel-text",
        )
        view = {"format": "png", "interactive": False, "buttons": ["fullscreen"]}
        with gr.Row():
            model_in = gr.Image(label="Model input", height=180, **view)
            recon = gr.Image(label="Reconstruction", height=180, **view)
        hist = gr.Image(label="DICOM stored values and display window", visible=False, **view)
    forget = gr.Button("Forget this X-ray", size="sm", visible=False, elem_id="forget")
    return [empty, overview, summary, warn, model_in, recon, hist, forget]
