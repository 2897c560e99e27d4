"""The Gradio app: a chat about a chest X-ray, streaming answers and X-rays drawn in the chat.

`build(studio, server)` lays out the page and wires ui/chat.py's handlers; `launch_kwargs(server)` is the
exact launch configuration. app.py and the tests use both, so tests exercise what is served. Privacy and
safety settings (docs/SERVING.md, docs/PRIVACY.md): `server.concurrency` model slots, a bounded queue refused with a clear
message, every file deleted after `server.delete_cache_s` by the sweeper (ui/sweeper.py) and all of them at
shutdown, a cap on sessions per client, no share tunnel, no SSR, no browser run history, no analytics, no
third-party fonts, only the example folder served beyond the app's file root.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from llmcxr_app.config import REPO_ROOT, ServerConfig
from llmcxr_app.studio.facade import Studio
from llmcxr_app.ui import sweeper
from llmcxr_app.ui.chat import ChatApp
from llmcxr_app.ui.render import DEMO_LABEL, duration, status_markdown
from llmcxr_app.ui.routing import MODES
from llmcxr_app.ui.sessions import delete_session

logger = logging.getLogger(__name__)

ASSETS = REPO_ROOT / "assets"
EXAMPLES_DIR = ASSETS / "examples"
CSS_PATH = ASSETS / "style.css"
# No extension filter: images.load_image decides by content (PNG, JPEG, TIFF, DICOM) and refuses anything
# else with a message. PACS exports are often DICOM files without an extension (IM0001, 1.2.840...), and
# Gradio's browser side drops such files on drag-and-drop whenever a list of extensions is set.
FILE_TYPES = None
GPU = "gpu"  # the concurrency group of every event that runs the model
# Gradio's own queue bound, as a multiple of server.queue_size: the app refuses at queue_size with its own
# message (ChatApp.stage and ChatApp.admit); this only stops what slips past both in a burst.
QUEUE_BACKSTOP = 2

PLACEHOLDER = (
    "**Attach a chest X-ray** (PNG, JPEG or DICOM) for a report, or add a question about it.  \n"
    "**Type findings** and ask to *draw* an X-ray to get a synthetic image.  \n"
    "Follow-up questions refer to the current X-ray on the right."
)
MODE_INFO = (
    "**Auto**: image alone → report · question → answer about the current X-ray · “draw … X-ray” → "
    "synthetic image · findings → drawn (with an X-ray: you choose) · no X-ray yet → plain instruction"
)


class StudioBlocks(gr.Blocks):
    """gr.Blocks whose close() also closes the chat's sessions and removes the app's files, and whose
    blocking launch() ends, on Ctrl-C or SIGTERM alike, with close()."""

    chat_app: ChatApp | None = None

    def launch(self, *args: Any, **kwargs: Any):
        # quiet: Gradio's prints (its URL line and the "set share=True" hint, wrong for a private server)
        # give way to one "Ready" log line with the URL, written once the server answers.
        kwargs.setdefault("quiet", True)
        if kwargs.get("prevent_thread_lock"):
            result = super().launch(*args, **kwargs)
            logger.info("Ready: the app answers on %s", self.local_url)
            return result
        with sweeper.interrupt_on_sigterm():
            try:
                result = super().launch(*args, **{**kwargs, "prevent_thread_lock": True})
                logger.info("Ready: the app answers on %s", self.local_url)
                self.block_thread()  # serves until interrupted
                return result
            finally:
                self.close()

    def close(self, verbose: bool = True) -> None:
        try:
            super().close(verbose)
        finally:
            if self.chat_app is not None:
                self.chat_app.close()


def _kept_files(demo: gr.Blocks) -> set[str]:
    """Files Gradio keeps in its cache for the page itself (the examples): never swept while serving."""
    return {f for block in demo.blocks.values() for f in getattr(block, "keep_in_cache", ())}


def _waiting_for_model(demo: gr.Blocks) -> int:
    """Requests waiting in the queue for the model (those it is answering are not counted)."""
    group = demo._queue.event_queue_per_concurrency_id.get(GPU)
    return len(group.queue) if group is not None else 0


def _upload_cap(server: ServerConfig) -> Middleware:
    return Middleware(
        sweeper.UploadCap,
        limit=server.max_uploads_per_client,
        window_s=server.delete_cache_s,
        trust_forwarded_for=server.trust_forwarded_for,
        window_text=duration(server.delete_cache_s),
    )


def _header(studio: Studio, ttl_s: float) -> str:
    demo = studio.info.is_demo
    badge = "<span class='demo-pill'>DEMO MODEL</span>" if demo else ""
    demo_note = f" This is the <b>{DEMO_LABEL}</b>; it knows only phantoms." if demo else ""
    return (
        f"<div class='app-header'><div class='app-title'>LLM-CXR Studio {badge}</div>"
        "<div class='app-subtitle'>Reports, questions and synthetic images for chest X-rays, "
        "with the LLM-CXR model</div></div>"
        "<div class='disclaimer' role='note'><b>Research use only — not a medical device.</b> Answers may be "
        "wrong and must not guide diagnosis or treatment. Generated X-rays are synthetic and marked so. "
        f"Uploads and outputs are deleted {duration(ttl_s)} after they are made.{demo_note}</div>"
    )


def _examples(examples_dir: Path) -> tuple[list[list], list[str]]:
    """(examples, labels) for gr.Examples over [message box, mode]: describe, ask, draw."""
    files = sorted(p for p in examples_dir.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
    images = [p for p in files if p.suffix.lower() != ".dcm"]
    dicoms = [p for p in files if p.suffix.lower() == ".dcm"]
    rows, labels = [], []
    if images:
        rows.append([{"text": "", "files": [str(images[0])]}, "Auto"])
        labels.append(f"Report: {images[0].stem.replace('_', ' ')}")
        other = images[1] if len(images) > 1 else images[0]
        rows.append([{"text": "Is there a pleural effusion?", "files": [str(other)]}, "Auto"])
        labels.append(f"Ask: effusion? ({other.stem.replace('_', ' ')})")
    if dicoms:
        rows.append([{"text": "", "files": [str(dicoms[0])]}, "Auto"])
        labels.append("Report: a DICOM file")
    rows.append(
        [
            {"text": "Draw a chest X-ray: Large left pleural effusion. Heart size is normal.", "files": []},
            "Auto",
        ]
    )
    labels.append("Draw: left pleural effusion")
    rows.append([{"text": "No acute cardiopulmonary process. Lungs are clear.", "files": []}, "Draw"])
    labels.append("Draw: normal chest")
    return rows, labels


@dataclass
class _ChatColumn:
    """The conversation side of the page."""

    chatbot: gr.Chatbot  # the conversation
    mode: gr.Radio  # Auto / Report / Ask / Draw
    box: gr.MultimodalTextbox  # the message box (text + one attachment)
    staged: gr.MultimodalTextbox  # hidden: the message being answered (the box is cleared at once)


@dataclass
class _SidePanel:
    """The current X-ray panel and the generation settings."""

    panel: list  # the eight components panel.panel_updates fills, in its order
    settings: list  # temperature, top-p, max new tokens, seed, Draw candidates: /chat's settings inputs


def _chat_column(app: ChatApp, examples_dir: Path) -> _ChatColumn:
    chatbot = gr.Chatbot(
        elem_id="chat",
        show_label=False,
        height="54vh",
        min_height=380,
        placeholder=PLACEHOLDER,
        buttons=["copy", "copy_all"],
        feedback_options=None,
        layout="bubble",
    )
    with gr.Row(equal_height=True, elem_id="mode-row"):
        mode = gr.Radio(
            list(MODES),
            value="Auto",
            label="Mode",
            show_label=False,
            container=False,
            elem_id="mode",
            scale=0,
            min_width=410,
        )
        gr.Markdown(MODE_INFO, elem_classes="mode-info")
    box = gr.MultimodalTextbox(
        elem_id="message",
        show_label=False,
        file_types=FILE_TYPES,
        file_count="single",
        sources=["upload"],
        submit_btn=True,
        stop_btn=False,
        max_lines=8,
        placeholder="Attach an X-ray (PNG, JPEG, DICOM) and/or type a question or findings to draw…",
    )
    staged = gr.MultimodalTextbox(visible=False, file_types=FILE_TYPES)
    rows, labels = _examples(examples_dir)
    shown = gr.Examples(rows, [box, mode], example_labels=labels, label="Examples", cache_examples=False)
    app.keep_examples(shown.dataset.samples)  # Gradio's copies of them are not uploads to delete
    return _ChatColumn(chatbot, mode, box, staged)


def _xray_panel() -> list:
    """The current X-ray, its summary and warnings, the model's view of it and (DICOM) its histogram."""
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
    with gr.Accordion("Model view: crop and VQ-GAN reconstruction", open=False, elem_id="model-view"):
        gr.Markdown(
            "Left: the centre crop the VQ-GAN encodes. Right: its reconstruction from the image "
            "tokens, which is what the LLM actually receives.",
            elem_classes="panel-text",
        )
        view = {"format": "png", "interactive": False, "buttons": ["fullscreen"]}
        with gr.Row():
            model_in = gr.Image(label="Model input", height=180, **view)
            recon = gr.Image(label="Reconstruction", height=180, **view)
        hist = gr.Image(label="DICOM stored values and display window", visible=False, **view)
    forget = gr.Button("Forget this X-ray", size="sm", visible=False, elem_id="forget")
    return [empty, overview, summary, warn, model_in, recon, hist, forget]


def _settings(server: ServerConfig) -> list:
    """The generation settings, in /chat's order: temperature, top-p, max new tokens, seed, candidates."""
    with gr.Accordion("Generation settings", open=False, elem_id="settings"):
        temperature = gr.Slider(
            0,
            2,
            value=1.0,
            step=0.05,
            label="Temperature",
            info="0 = always the most likely token (deterministic)",
        )
        top_p = gr.Slider(0.05, 1.0, value=0.92, step=0.01, label="Top-p (nucleus)")
        max_tokens = gr.Slider(16, 1024, value=512, step=16, label="Max new tokens (text answers)")
        seed = gr.Textbox(
            label="Seed", placeholder="blank = random (shown under each answer)", elem_id="seed"
        )
        candidates = gr.Slider(
            1,
            server.max_candidates,
            value=1,
            step=1,
            label="Draw: candidates",
            info="several X-rays from the same findings, shown as a grid",
        )
    return [temperature, top_p, max_tokens, seed, candidates]


def _model_event(server: ServerConfig, chatbot: gr.Chatbot) -> dict[str, Any]:
    """How every event that runs the model is queued: one concurrency group sized by the server, its queue
    position and timer shown on the conversation only."""
    return {
        "concurrency_id": GPU,
        "concurrency_limit": server.concurrency,
        "show_progress": "minimal",
        "show_progress_on": [chatbot],
    }


def _wire(app: ChatApp, server: ServerConfig, session: gr.State, chat: _ChatColumn, side: _SidePanel) -> None:
    """The events: send (stage, then /chat), a clicked choice (redo in another mode), stop, forget, clear."""
    idle_box = gr.update(submit_btn=True, stop_btn=False)
    quiet = {"queue": False, "show_progress": "hidden"}  # instant UI bookkeeping: no spinner, no queue
    model = _model_event(server, chat.chatbot)
    outputs = [chat.chatbot, session, chat.box, *side.panel]
    # Queued (in its own unlimited group, so it never waits for the model) because Gradio 6.31 shows a
    # gr.Error's message only for queued events: a refusal (full queue, session cap) must be read.
    staging = chat.box.submit(
        app.stage,
        [chat.box, session],
        [chat.staged, chat.box, chat.chatbot, session],
        api_visibility="private",
        concurrency_id="ui",
        concurrency_limit=None,
        show_progress="hidden",
    )
    inputs = [chat.staged, chat.mode, *side.settings, session]
    # validator: a full queue refuses /chat with QUEUE_FULL, not Gradio's generic text
    answer = staging.success(app.chat, inputs, outputs, api_name="chat", validator=app.admit, **model)
    answer.then(lambda: idle_box, None, chat.box, api_visibility="private", **quiet)
    # A click on a choice under a message (Auto's "Draw or ask?", "Redo as ..."): the text again, that mode.
    chosen_mode = gr.State("Auto")  # the clicked choice's mode; the Mode radio stays as the user set it
    chosen = chat.chatbot.option_select(
        app.choose,
        [session],
        [chat.staged, chosen_mode, session, chat.box],
        api_visibility="private",
        **quiet,
    )
    redo_inputs = [chat.staged, chosen_mode, *side.settings, session]
    redo = chosen.success(app.chat, redo_inputs, outputs, api_visibility="private", **model)
    redo.then(lambda: idle_box, None, chat.box, api_visibility="private", **quiet)
    cancels = [answer, redo]
    chat.box.stop(app.stop, [session], [chat.chatbot, chat.box], cancels=cancels, api_name="stop", **quiet)
    side.panel[-1].click(app.forget, [session], [session, *side.panel], api_name="forget", **quiet)
    chat.chatbot.clear(app.clear, [session], [session, *side.panel], api_name="clear", **quiet)


def build(studio: Studio, server: ServerConfig | None = None, examples_dir: Path | None = None) -> gr.Blocks:
    """The chat app for one loaded Studio. Named API endpoints: /chat (message, mode, temperature, top_p,
    max_new_tokens, seed, candidates -> chat, box, panel...), /stop, /forget, /clear."""
    server = server or ServerConfig()
    app = ChatApp(studio, server)  # first: it points Gradio's cache at the sweeper's root (sweeper.attach)
    title = "LLM-CXR Studio" + (" (demo model)" if studio.info.is_demo else "")
    # No delete_cache: the sweeper owns every file (Gradio's own expiry keeps files up to two TTLs).
    with StudioBlocks(title=title, analytics_enabled=False) as demo:
        session = gr.State(None, delete_callback=delete_session)  # a sessions.Session, made on first use
        gr.HTML(_header(studio, server.delete_cache_s))
        gr.Markdown(status_markdown(studio.info), elem_classes="status-line", elem_id="status-line")
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=420):
                chat = _chat_column(app, examples_dir or EXAMPLES_DIR)
            with gr.Column(scale=4, min_width=300, elem_id="side"):
                side = _SidePanel(_xray_panel(), _settings(server))
        _wire(app, server, session, chat, side)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_BACKSTOP * server.queue_size)
    demo.chat_app = app
    app.waiting = lambda: _waiting_for_model(demo)
    app.files.keep = lambda: _kept_files(demo)
    return demo


def launch_kwargs(server: ServerConfig | None = None) -> dict[str, Any]:
    """Arguments for `Blocks.launch` (gradio 6.31): bind address, limits, privacy, theme and CSS."""
    server = server or ServerConfig()
    return {
        "server_name": server.host,
        "server_port": server.port,
        "max_file_size": server.max_file_size,
        "share": False,  # never a public tunnel
        "ssr_mode": False,
        "enable_monitoring": False,
        "run_history": False,  # nothing stored in the browser's run history
        "footer_links": ["api"],
        "allowed_paths": [str(EXAMPLES_DIR)],
        "app_kwargs": {"middleware": [_upload_cap(server)]},  # uploads per client address per TTL
        "theme": gr.themes.Soft(
            primary_hue="blue",
            neutral_hue="slate",
            font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
            font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
        ),
        "css": CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None,
    }
