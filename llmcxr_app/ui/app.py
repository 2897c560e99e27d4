"""The Gradio app: a chat about a chest X-ray, streaming answers and X-rays drawn in the chat.

`build(studio, server)` lays out the page and wires ui_chat's handlers; `launch_kwargs(server)` is the exact
launch configuration. app.py and the tests use both, so tests exercise what is served. Privacy and safety
settings (see DESIGN.md section 6): one queue slot for the model, a bounded queue, uploads and outputs
deleted after `server.delete_cache_s`, no share tunnel, no SSR, no browser run history, no analytics, no
third-party fonts, only the example folder served beyond Gradio's cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from llmcxr_app.config import REPO_ROOT, ServerConfig
from llmcxr_app.studio.facade import Studio
from llmcxr_app.ui.chat import ChatApp, _delete_session
from llmcxr_app.ui.render import DEMO_LABEL, status_markdown
from llmcxr_app.ui.routing import MODES

ASSETS = REPO_ROOT / "assets"
EXAMPLES_DIR = ASSETS / "examples"
CSS_PATH = ASSETS / "style.css"
# No extension filter: imaging.load_image decides by content (PNG, JPEG, TIFF, DICOM) and refuses anything
# else with a message. PACS exports are often DICOM files without an extension (IM0001, 1.2.840...), and
# Gradio's browser side drops such files on drag-and-drop whenever a list of extensions is set.
FILE_TYPES = None
GPU = "gpu"  # the concurrency group of every event that runs the model

PLACEHOLDER = (
    "**Attach a chest X-ray** (PNG, JPEG or DICOM) for a report, or add a question about it.  \n"
    "**Type findings** and ask to *draw* an X-ray to get a synthetic image.  \n"
    "Follow-up questions refer to the current X-ray on the right."
)
MODE_INFO = (
    "**Auto**: image alone → report · question → answer about the current X-ray · “draw … X-ray” → "
    "synthetic image · no X-ray yet → plain instruction"
)


def _header(studio: Studio) -> str:
    demo = studio.info.is_demo
    badge = "<span class='demo-pill'>DEMO MODEL</span>" if demo else ""
    demo_note = f" This is the <b>{DEMO_LABEL}</b>; it knows only phantoms." if demo else ""
    return (
        f"<div class='app-header'><div class='app-title'>LLM-CXR Studio {badge}</div>"
        "<div class='app-subtitle'>Reports, questions and synthetic images for chest X-rays, "
        "with the LLM-CXR model</div></div>"
        "<div class='disclaimer' role='note'><b>Research use only — not a medical device.</b> Answers may be "
        "wrong and must not guide diagnosis or treatment. Generated X-rays are synthetic and marked so. "
        f"Uploads and outputs are deleted within an hour.{demo_note}</div>"
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


def build(studio: Studio, server: ServerConfig | None = None, examples_dir: Path | None = None) -> gr.Blocks:
    """The chat app for one loaded Studio. Named API endpoints: /chat (message, mode, temperature, top_p,
    max_new_tokens, seed, candidates -> chat, box, panel...), /stop, /forget, /clear."""
    server = server or ServerConfig()
    app = ChatApp(studio, server)
    info = studio.info
    title = "LLM-CXR Studio" + (" (demo model)" if info.is_demo else "")
    ttl = server.delete_cache_s
    with gr.Blocks(title=title, delete_cache=(ttl, ttl), analytics_enabled=False) as demo:
        session = gr.State(None, delete_callback=_delete_session)  # a ui_chat.Session, made on first use
        gr.HTML(_header(studio))
        gr.Markdown(status_markdown(info), elem_classes="status-line", elem_id="status-line")
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=420):
                chatbot = gr.Chatbot(
                    elem_id="chat", show_label=False, height="54vh", min_height=380, placeholder=PLACEHOLDER,
                    buttons=["copy", "copy_all"], feedback_options=None, layout="bubble",
                )  # fmt: skip
                with gr.Row(equal_height=True, elem_id="mode-row"):
                    mode = gr.Radio(
                        list(MODES), value="Auto", label="Mode", show_label=False, container=False,
                        elem_id="mode", scale=0, min_width=410,
                    )  # fmt: skip
                    gr.Markdown(MODE_INFO, elem_classes="mode-info")
                box = gr.MultimodalTextbox(
                    elem_id="message", show_label=False, file_types=FILE_TYPES, file_count="single",
                    sources=["upload"], submit_btn=True, stop_btn=False, max_lines=8,
                    placeholder="Attach an X-ray (PNG, JPEG, DICOM) and/or type a question or findings to draw…",
                )  # fmt: skip
                staged = gr.MultimodalTextbox(
                    visible=False, file_types=FILE_TYPES
                )  # the message being answered
                rows, labels = _examples(examples_dir or EXAMPLES_DIR)
                gr.Examples(rows, [box, mode], example_labels=labels, label="Examples", cache_examples=False)
            with gr.Column(scale=4, min_width=300, elem_id="side"):
                gr.Markdown("### Current X-ray", elem_classes="panel-title")
                empty = gr.Markdown(
                    "No X-ray yet. Attach one with the paperclip; follow-up questions will refer to it.",
                    elem_classes="panel-empty",
                )
                overview = gr.Image(
                    label="Current X-ray", show_label=False, type="pil", format="png",
                    interactive=False, visible=False, height=300, buttons=["fullscreen"], elem_id="overview",
                )  # fmt: skip
                summary = gr.Markdown(elem_classes="panel-text")
                warn = gr.Markdown(visible=False, elem_classes="image-warnings")
                with gr.Accordion(
                    "Model view: crop and VQ-GAN reconstruction", open=False, elem_id="model-view"
                ):
                    gr.Markdown(
                        "Left: the centre crop the VQ-GAN encodes. Right: its reconstruction from the image "
                        "tokens, which is what the LLM actually receives.",
                        elem_classes="panel-text",
                    )
                    with gr.Row():
                        model_in = gr.Image(label="Model input", format="png", interactive=False,
                                            buttons=["fullscreen"], height=180)  # fmt: skip
                        recon = gr.Image(label="Reconstruction", format="png", interactive=False,
                                         buttons=["fullscreen"], height=180)  # fmt: skip
                    hist = gr.Image(label="DICOM stored values and display window", format="png",
                                    interactive=False, visible=False, buttons=["fullscreen"])  # fmt: skip
                forget = gr.Button("Forget this X-ray", size="sm", visible=False, elem_id="forget")
                with gr.Accordion("Generation settings", open=False, elem_id="settings"):
                    temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="Temperature",
                                            info="0 = always the most likely token (deterministic)")  # fmt: skip
                    top_p = gr.Slider(0.05, 1.0, value=0.92, step=0.01, label="Top-p (nucleus)")
                    max_tokens = gr.Slider(
                        16, 1024, value=512, step=16, label="Max new tokens (text answers)"
                    )
                    seed = gr.Textbox(label="Seed", placeholder="blank = random (shown under each answer)",
                                      elem_id="seed")  # fmt: skip
                    candidates = gr.Slider(1, server.max_candidates, value=1, step=1, label="Draw: candidates",
                                           info="several X-rays from the same findings, shown as a grid")  # fmt: skip
        panel = [empty, overview, summary, warn, model_in, recon, hist, forget]
        idle_box = gr.update(submit_btn=True, stop_btn=False)

        quiet = {"queue": False, "show_progress": "hidden"}  # instant UI bookkeeping: no spinner, no queue
        staging = box.submit(
            app.stage, [box, session], [staged, box, chatbot, session], api_visibility="private", **quiet
        )
        answer = staging.success(
            app.chat,
            [staged, mode, temperature, top_p, max_tokens, seed, candidates, session],
            [chatbot, session, box, *panel],
            api_name="chat",
            concurrency_id=GPU,
            concurrency_limit=1,
            show_progress="minimal",
            show_progress_on=[chatbot],  # the queue position / timer shows on the conversation only
        )
        answer.then(lambda: idle_box, None, box, api_visibility="private", **quiet)
        box.stop(app.stop, [session], [chatbot, box], cancels=[answer], api_name="stop", **quiet)
        forget.click(app.forget, [session], [session, *panel], api_name="forget", **quiet)
        chatbot.clear(app.clear, [session], [session, *panel], api_name="clear", **quiet)
    demo.queue(default_concurrency_limit=1, max_size=server.queue_size)
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
        "theme": gr.themes.Soft(
            primary_hue="blue",
            neutral_hue="slate",
            font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
            font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
        ),
        "css": CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None,
    }
