"""The Gradio app: a chat about a chest X-ray, streaming answers and X-rays drawn in the chat.

`build(models, server)` (one loaded model, or several by name: a picker and Compare) lays out the page and wires ui/chat.py's handlers; `launch_kwargs(server)` is the
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

from llmcxr_app.config import REPO_ROOT, SamplingConfig, ServerConfig
from llmcxr_app.studio.types import ChatModel
from llmcxr_app.ui import sweeper
from llmcxr_app.ui.chat import ChatApp
from llmcxr_app.ui.compare import Comparer, ModelRow, model_row
from llmcxr_app.ui.panel import xray_panel
from llmcxr_app.ui.render import (
    CANDIDATES_LABEL,
    DEMO_LABEL,
    GUIDANCE_INFO,
    GUIDANCE_LABEL,
    GUIDE_AWAY_CHOICES,
    GUIDE_AWAY_LABEL,
    MODE_INFO,
    duration,
    status_markdown,
)
from llmcxr_app.ui.routing import MODES
from llmcxr_app.ui.scripts import SCROLL_TO_BOTTOM, SCROLL_TO_DRAWING
from llmcxr_app.ui.sessions import delete_session

logger = logging.getLogger(__name__)

ASSETS = REPO_ROOT / "assets"
DEMO_NOTE = DEMO_LABEL.split(": ", 1)[
    -1
]  # beside the "DEMO MODEL" pill: "trained on synthetic phantoms, ..."
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
    "Follow-up questions refer to the current X-ray (the panel beside or below the chat)."
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


def _header(app: ChatApp, ttl_s: float) -> str:
    """Title, one notice (research use, deletion and, for the demo model, the page's one demo notice), then
    the model's status line. The notice is a <details>: its first sentence (and the demo pill) always shows;
    style.css shows the rest open on a laptop and one tap away ("more") on a phone."""
    pill = " <span class='demo-pill'>DEMO MODEL</span>" if app.models.any_demo else ""
    demo = f" <span class='demo-note'>{DEMO_NOTE}.</span>" if app.models.any_demo else ""
    status = status_markdown(app.studio.info)
    if app.models.several:  # the default model's status, then every model the picker offers
        status += " &nbsp;·&nbsp; <b>Models</b> " + ", ".join(app.models.label(n) for n in app.models.names)
    return (
        "<div class='app-header'><span class='app-title'>LLM-CXR Studio</span>"
        "<span class='app-subtitle'>reports, questions and synthetic images for chest X-rays</span></div>"
        "<details class='disclaimer' id='notice' role='note'><summary><b>Research use only — not a medical "
        f"device.</b>{pill} <span class='notice-more'>more</span></summary> <span class='notice-rest'>Answers "
        "may be wrong and must not guide diagnosis or treatment; generated X-rays are synthetic and marked so. "
        f"Uploads and outputs are deleted after {duration(ttl_s)}.{demo}</span></details>"
        f"<div class='status-line' id='status-line'>{status}</div>"
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
        labels.append("Ask: effusion?")
    if dicoms:
        rows.append([{"text": "", "files": [str(dicoms[0])]}, "Auto"])
        labels.append("Report: DICOM")
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
    hint: gr.Markdown  # what the mode shown does (MODE_INFO)
    box: gr.MultimodalTextbox  # the message box (text + one attachment)
    staged: gr.MultimodalTextbox  # hidden: the message being answered (the box is cleared at once)
    new_chat: gr.Button  # forget the conversation and the X-ray
    examples: gr.Dataset  # the examples' buttons
    example_modes: list[str]  # the mode of each example, in the dataset's order
    strip: gr.HTML  # above the box: the current X-ray's thumbnail, name and size (shown on phones only)
    models: ModelRow | None  # the model picker and Compare (several models loaded), else None


@dataclass
class _SidePanel:
    """The current X-ray panel and the generation settings."""

    panel: list  # the nine components panel.panel_updates fills, in its order (the strip is the chat's)
    settings: list  # temperature, top-p, max new tokens, seed, Draw candidates: /chat's settings inputs
    drawing: list  # the drawings' guidance slider and what it guides away from: /chat's last inputs, so
    #                calls made before they existed still work


def _chat_column(app: ChatApp, examples_dir: Path) -> _ChatColumn:
    chatbot = gr.Chatbot(
        elem_id="chat",
        show_label=False,
        # The page's header, mode row, message box and examples take about 410 px: they stay on screen at
        # load on a 1366 x 768 laptop (style.css shortens the chat on phones).
        height="calc(100dvh - 410px)",
        min_height=240,
        placeholder=PLACEHOLDER,
        buttons=["copy"],  # no "share" (it works only on Spaces), no copy-all icon over the conversation
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
            min_width=360,
        )
        hint = gr.Markdown(MODE_INFO["Auto"], elem_classes="mode-info", elem_id="mode-info")
        new_chat = gr.Button("New chat", size="sm", scale=0, min_width=90, elem_id="new-chat")
    row = model_row(app.models)
    strip = gr.HTML(visible=False, elem_id="xray-strip", js_on_load=None)  # no click event to the server
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
    # The examples fill the box only; their mode is set by _wire for their own request, then put back.
    shown = gr.Examples(
        [row[:1] for row in rows],
        [box],
        example_labels=labels,
        label="Examples",
        cache_examples=False,
        elem_id="examples",
    )
    modes = [row[1] for row in rows]
    return _ChatColumn(chatbot, mode, hint, box, staged, new_chat, shown.dataset, modes, strip, row)


def _settings(server: ServerConfig, guidance: float) -> tuple[list, list]:
    """The generation settings: (temperature, top-p, max new tokens, seed, candidates in /chat's order;
    the drawings' guidance, starting at ``guidance``, and what it avoids: /chat's last inputs)."""
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
            label=CANDIDATES_LABEL,
            info="several X-rays from the same findings, shown as a grid",
        )
        top = max(3.0, guidance)  # a checkpoint may declare up to 5
        scale = gr.Slider(1.0, top, value=guidance, step=0.25, label=GUIDANCE_LABEL, info=GUIDANCE_INFO)
        away = gr.Radio(
            GUIDE_AWAY_CHOICES,
            value=SamplingConfig.guide_away_from,
            label=GUIDE_AWAY_LABEL,
            elem_id="guide-away",
        )
    return [temperature, top_p, max_tokens, seed, candidates], [scale, away]


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
    stage = {
        "fn": app.stage,
        "inputs": [chat.box, session],
        "outputs": [chat.staged, chat.box, chat.chatbot, session],
        "api_visibility": "private",
        "concurrency_id": "ui",
        "concurrency_limit": None,
        "show_progress": "hidden",
    }
    staging = chat.box.submit(**stage)
    # Several models: the picker names one (/chat's input before the drawings'); one model: a placeholder.
    picked = chat.models.picker if chat.models else gr.State(None)
    inputs = [chat.staged, chat.mode, *side.settings, session, picked, *side.drawing]
    # validator: a full queue refuses /chat with QUEUE_FULL, not Gradio's generic text
    answer = staging.success(app.chat, inputs, outputs, api_name="chat", validator=app.admit, **model)
    answer.then(lambda: idle_box, None, chat.box, api_visibility="private", **quiet)
    answer.then(None, None, None, js=SCROLL_TO_DRAWING, api_visibility="private", **quiet)
    for event in (chat.box.submit, chat.chatbot.option_select):
        event(None, None, None, js=SCROLL_TO_BOTTOM, api_visibility="private", **quiet)
    _wire_modes(chat, answer, quiet)
    # A click on a choice under a message (Auto's "Draw or ask?", "Redo as ..."): the text again, that mode.
    chosen_mode = gr.State("Auto")  # the clicked choice's mode; the Mode radio stays as the user set it
    chosen = chat.chatbot.option_select(
        app.choose,
        [session],
        [chat.staged, chosen_mode, session, chat.box],
        api_visibility="private",
        **quiet,
    )
    redo_inputs = [chat.staged, chosen_mode, *side.settings, session, picked, *side.drawing]
    redo = chosen.success(app.chat, redo_inputs, outputs, api_visibility="private", **model)
    redo.then(lambda: idle_box, None, chat.box, api_visibility="private", **quiet)
    redo.then(None, None, None, js=SCROLL_TO_DRAWING, api_visibility="private", **quiet)
    cancels = [answer, redo]
    if chat.models:  # Compare: staged as Send is, answered by two models; Stop stops it too
        compare = Comparer(app).wire(chat.models, stage, side.settings, outputs, model, idle_box)
        cancels.append(compare)
    chat.box.stop(app.stop, [session], [chat.chatbot, chat.box], cancels=cancels, api_name="stop", **quiet)
    side.panel[-1].click(app.forget, [session], [session, *side.panel], api_name="forget", **quiet)
    chat.new_chat.click(
        lambda s: ([], *app.clear(s)),
        [session],
        [chat.chatbot, session, *side.panel],
        api_name="clear",
        **quiet,
    )


def _wire_modes(chat: _ChatColumn, answer: Any, quiet: dict[str, Any]) -> None:
    """The hint follows the Mode control; an example sets its mode for its own request only: the mode shown
    before it comes back once that answer is done (unless the user picked a mode meanwhile)."""
    restore = gr.State(None)  # the user's mode to put back after an example's request, or None

    def pick(current: str, waiting: str | None, evt: gr.SelectData):
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        wanted = chat.example_modes[int(index)]
        back = (waiting or current) if wanted != current or waiting else None
        return gr.update(value=wanted), back

    def put_back(waiting: str | None):
        return (gr.update(value=waiting) if waiting else gr.skip()), None

    private = {"api_visibility": "private", **quiet}
    chat.examples.select(pick, [chat.mode, restore], [chat.mode, restore], **private)
    chat.mode.change(lambda m: MODE_INFO.get(m, ""), chat.mode, chat.hint, **private)
    chat.mode.input(lambda: None, None, restore, **private)  # the user's own choice stays
    answer.then(put_back, restore, [chat.mode, restore], **private)


def build(
    models: ChatModel | dict[str, ChatModel],
    server: ServerConfig | None = None,
    examples_dir: Path | None = None,
) -> gr.Blocks:
    """The chat app for one loaded Studio. Named API endpoints: /chat (message, mode, temperature, top_p,
    max_new_tokens, seed, candidates -> chat, box, panel...), /stop, /forget, /clear."""
    server = server or ServerConfig()
    app = ChatApp(models, server)  # first: it points Gradio's cache at the sweeper's root (sweeper.attach)
    title = "LLM-CXR Studio" + (" (demo model)" if app.models.any_demo else "")
    # No delete_cache: the sweeper owns every file (Gradio's own expiry keeps files up to two TTLs).
    with StudioBlocks(title=title, analytics_enabled=False) as demo:
        session = gr.State(None, delete_callback=delete_session)  # a sessions.Session, made on first use
        gr.HTML(_header(app, server.delete_cache_s))
        with gr.Row(equal_height=False, elem_id="main-row"):
            with gr.Column(scale=7, min_width=320):  # 320: a phone's width
                chat = _chat_column(app, examples_dir or EXAMPLES_DIR)
            with gr.Column(scale=4, min_width=280, elem_id="side"):
                *shown, forget = xray_panel()
                settings = _settings(server, app.models.draw_guidance)
                side = _SidePanel([*shown, chat.strip, forget], *settings)
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
