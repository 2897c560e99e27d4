"""Pictures and text the chat UI shows: display copies, crop overlay, confidence map, histogram, provenance.

No Gradio here (ui.py wires these into components). Every picture returned here carries pixels only
(redact.strip_metadata): Gradio writes an image's `info` text into the PNG it serves. Figures use matplotlib's object API on the Agg canvas,
never pyplot: pyplot keeps global figure state, and requests run in worker threads.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from PIL import Image, ImageDraw

from llmcxr_app.imaging.images import LoadedImage
from llmcxr_app.redact import strip_metadata
from llmcxr_app.studio.guidance import describe as describe_guidance

DISPLAY_SIDE = 512  # chat/panel copies of model-resolution images (128 px demo, 32 px tests) are upscaled
PANEL_MAX_SIDE = 640  # uploads shown in the chat and panel are shrunk to this (browser bandwidth)...
PANEL_MIN_SIDE = 384  # ...and small ones enlarged to this, so a 64 px test film is not a speck
CROP_COLOUR = (245, 158, 11)  # amber outline of the model's crop on the original
DEMO_LABEL = "demo model: trained on synthetic phantoms, not on real X-rays"
CANDIDATES_LABEL = "Draw: candidates"  # the settings slider; the Draw hint names it by this label
GUIDANCE_LABEL = "Guidance (drawings)"
GUIDANCE_INFO = (
    "1 = the model's own drawing. Higher pushes it away from what is chosen below; a second prompt runs "
    "beside the drawing, so it takes longer. "
    "It starts at the model's own setting."
)
GUIDE_AWAY_LABEL = "Guide drawings away from"
# The choices of GUIDE_AWAY_LABEL: (what the page shows, SamplingConfig.guide_away_from)
GUIDE_AWAY_CHOICES = [
    ("the other lung's findings (each side drawn from its own; else as below)", "sides"),
    ("the other side, size and zone (a small effusion: none)", "swapped"),
    ("a normal chest (more of every finding, asked for or not)", "normal"),
]
MODE_INFO = {  # the hint beside the Mode control, for the mode it shows
    "Auto": "**Auto**: image → report · question → answer about the current X-ray · “draw … X-ray” or "
    "findings → synthetic image (with an X-ray: you choose) · no X-ray → plain instruction",
    "Report": "**Report**: a findings report of the current (or attached) X-ray; any text is ignored",
    "Ask": "**Ask**: your text as a question about the current X-ray (none loaded: a plain instruction)",
    "Draw": "**Draw**: your text as findings → a synthetic X-ray, drawn even when an X-ray is loaded",
}
EMPTY_MESSAGE = "The message is empty: type a question or findings, or attach a chest X-ray."
# The message box once a request ends or is refused: Send, not Stop (a refused request sets it itself: the
# events chained after it do not run after an error).
IDLE_BOX = {"submit_btn": True, "stop_btn": False}
STOP_REASONS = {"end": "end of answer", "length": "length limit reached", "image": "image complete"}


def display_copy(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """Grayscale copy of a square model image scaled to `side` px (LANCZOS up, never down)."""
    gray = image.convert("L")
    if gray.width >= side:
        return strip_metadata(gray)
    return strip_metadata(gray.resize((side, round(side * gray.height / gray.width)), Image.LANCZOS))


def fit(image: Image.Image, min_side: int = PANEL_MIN_SIDE, max_side: int = PANEL_MAX_SIDE) -> Image.Image:
    """Copy scaled (aspect kept, LANCZOS) so its longer side is within [min_side, max_side]."""
    longest = max(image.size)
    scale = max_side / longest if longest > max_side else (min_side / longest if longest < min_side else 1.0)
    if scale == 1.0:
        return strip_metadata(image)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return strip_metadata(image.resize(size, Image.LANCZOS))


def crop_overlay(
    image: Image.Image, crop_box: Sequence[float], original_size: tuple[int, int] | None = None
) -> Image.Image:
    """The upload (scaled by `fit`) with everything outside the model's crop dimmed and the crop outlined.

    crop_box is (left, top, right, bottom) in original pixels, as PreparedImage.crop_box; original_size is
    the upload's (width, height) when `image` is its reduced display copy. Returns RGB without metadata.
    """
    base = fit(image.convert("RGB"))
    scale = base.width / (original_size or image.size)[0]
    size = base.size
    left, top, right, bottom = (round(v * scale) for v in crop_box)
    dim = Image.blend(base, Image.new("RGB", base.size, (0, 0, 0)), 0.6)
    dim.paste(base.crop((left, top, right, bottom)), (left, top))
    width = max(2, round(min(size) / 160))
    ImageDraw.Draw(dim).rectangle((left, top, right - 1, bottom - 1), outline=CROP_COLOUR, width=width)
    return strip_metadata(dim)


def _figure_to_image(fig: Figure) -> Image.Image:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    buf.seek(0)
    return strip_metadata(Image.open(buf).convert("RGB"))  # drops matplotlib's Software/DPI chunks


def confidence_map(image: Image.Image, probs: Sequence[float], grid: int, name: str = "") -> Image.Image:
    """The drawn image with the probability of each sampled token (grid x grid, row-major) as a colour
    overlay, with a colour bar from 0 to 1; `name` (e.g. "Candidate 2") begins the title. Returns an RGB
    figure (about 560 x 460 px)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.size != grid * grid:
        raise ValueError(f"expected {grid * grid} probabilities, got {p.size}.")
    fig = Figure(figsize=(5.0, 4.1), dpi=112)
    ax = fig.add_axes((0.02, 0.06, 0.74, 0.86))
    extent = (0, grid, grid, 0)  # one unit per token cell, row 0 at the top
    ax.imshow(np.asarray(image.convert("L")), cmap="gray", vmin=0, vmax=255, extent=extent)
    overlay = ax.imshow(
        p.reshape(grid, grid),
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        alpha=0.5,
        extent=extent,
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    what = f"{name}: confidence" if name else "Confidence"
    ax.set_title(f"{what} of each image token ({grid} x {grid})", fontsize=9)
    cax = fig.add_axes((0.80, 0.06, 0.04, 0.86))
    bar = fig.colorbar(overlay, cax=cax)
    bar.set_label("probability of the sampled token", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return _figure_to_image(fig)


def tile(images: Sequence[Image.Image], columns: int = 2, gap: int = 8) -> Image.Image:
    """Same-size RGB pictures in a grid, `columns` wide (one picture: itself), on white, `gap` px apart."""
    if len(images) == 1:
        return images[0]
    w, h = images[0].size
    cols = min(columns, len(images))
    rows = -(-len(images) // cols)
    out = Image.new("RGB", (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap), (255, 255, 255))
    for i, image in enumerate(images):
        out.paste(image.convert("RGB"), ((i % cols) * (w + gap), (i // cols) * (h + gap)))
    return strip_metadata(out)


def confidence_summary(probs: Sequence[float], grid: int) -> str:
    """One line: mean, and where the least confident token is (1-based row and column)."""
    p = np.asarray(probs, dtype=np.float64)
    worst = int(p.argmin())
    return (
        f"Mean token probability {p.mean():.2f}; lowest {p.min():.2f} at row {worst // grid + 1}, "
        f"column {worst % grid + 1}. Low values mark regions the model was unsure how to draw."
    )


def histogram_plot(counts: np.ndarray, edges: np.ndarray, window: tuple[float, float] | None) -> Image.Image:
    """Histogram of a DICOM's stored (modality) values, log count axis, the display window shaded (RGB)."""
    fig = Figure(figsize=(4.6, 2.5), dpi=112)
    ax = fig.add_axes((0.17, 0.21, 0.79, 0.58))  # free band on top: Gradio's label sits over the image
    filled = np.nonzero(counts > 0)[0]
    end = int(filled[-1]) + 2 if filled.size else len(edges)  # integer-aligned bins may run past the data
    counts, edges = counts[: end - 1], edges[:end]
    ax.stairs(np.maximum(counts, 0), edges, fill=True, color="#52606d")
    if counts.max() > 0:
        ax.set_yscale("log")
    if window is not None:
        centre, width = window
        low, high = (
            max(centre - width / 2, edges[0]),
            min(centre + width / 2, edges[-1]),
        )  # shade what is shown
        ax.axvspan(low, max(low, high), color="#f59e0b", alpha=0.18, label="display window")
        ax.legend(fontsize=7, frameon=False, loc="upper right")
    ax.set_xlabel("stored value (modality units)", fontsize=8)
    ax.set_ylabel("pixels (log)", fontsize=8)
    ax.yaxis.set_minor_formatter(NullFormatter())  # log axes label minor ticks too: too busy at this size
    ax.tick_params(which="both", labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _figure_to_image(fig)


def _fmt_number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"


def image_summary(loaded: LoadedImage, crop_box: Sequence[float], model_resolution: int, grid: int) -> str:
    """Markdown: format and size, what part the model sees, DICOM display window; no identifiers."""
    meta = loaded.metadata
    w, h = loaded.size  # the upload's own size (the kept display copy may be smaller)
    parts = [f"**{loaded.source_format}** · {w} × {h} px"]
    if meta.get("photometric"):
        parts.append(str(meta["photometric"]))
    if meta.get("modality"):
        parts.append(f"modality {meta['modality']}")
    if meta.get("view_position"):
        parts.append(f"view {meta['view_position']}")
    lines = [" · ".join(parts)]
    left, top, right, bottom = crop_box
    kept = (right - left) * (bottom - top) / max(1.0, w * h)
    # grid 0: an adapter-family model, whose vision tower gets pixels, not image tokens
    how = (
        f"{model_resolution} px ({grid} × {grid} tokens)"
        if grid
        else f"{model_resolution} px (its vision tower)"
    )
    if kept > 0.995:
        lines.append(f"The model sees the whole image at {how}.")
    else:
        lines.append(
            f"The model sees only the centre square (outlined in amber): {100 * kept:.0f}% of the image, at "
            f"{how}. The dimmed edges are cut, as {'in LLM-CXR' if grid else 'its image processor does'}."
        )
    voi = str(meta.get("voi") or "")
    if loaded.window is not None:
        c, wd = loaded.window
        source = "the full range of stored values" if voi.startswith("full range") else f"the file's {voi}"
        lines.append(f"Display window: level {_fmt_number(c)}, width {_fmt_number(wd)} ({source}).")
    elif voi:
        lines.append(f"Display: {voi}.")
    return "\n\n".join(lines)


def warnings_markdown(warnings: Sequence[str]) -> str:
    """Markdown list of image warnings ("" when none)."""
    return "\n".join(f"⚠️ {w}" for w in warnings)


def status_markdown(info) -> str:
    """The header status line (HTML) from a StudioInfo: model, device, precision, weights hash (the demo
    notice is the header's, once)."""
    sep = " &nbsp;·&nbsp; "
    return sep.join(
        [
            f"<b>Model</b> {escape(info.model_name)}",
            f"<b>Device</b> {escape(info.device)}",
            f"<b>Precision</b> {escape(info.quantization)}",
            f"<b>Weights</b> <code>{escape(info.weight_hash)}</code>",
        ]
    )


TASK_NAMES = {
    "report": "report from the X-ray",
    "vqa": "question about the X-ray",
    "instruct": "instruction (no image)",
    "draw": "X-ray drawn from findings",
}


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{1000 * value:.0f} ms" if value < 1 else (f"{value:.2f} s" if value < 10 else f"{value:.1f} s")


DETAILS_TITLE = "Details & provenance"  # how an answer's details bubble title begins (label_answer names the mode before it)


def provenance_title(provenance: Mapping, timings: Mapping, stopped: bool = False) -> str:
    """Collapsed title under an answer: "Details · seed 123 · 2.4 s" (+ demo / stopped)."""
    bits = [DETAILS_TITLE, f"seed {provenance.get('seed')}", _seconds(timings.get("total_s"))]
    if provenance.get("is_demo"):
        bits.append("demo model")
    if stopped:
        bits.append("stopped")
    return " · ".join(bits)


def provenance_markdown(provenance: Mapping, timings: Mapping, extra: str = "") -> str:
    """Markdown lines "**Key:** value" for the task, model, weights, precision, seed, sampling and timings."""
    sampling = provenance.get("sampling") or {}
    model = str(provenance.get("model"))
    if provenance.get("is_demo"):
        model += f" ({DEMO_LABEL})"
    rate = timings.get("tokens_per_s")
    time_bits = [
        f"{_seconds(timings.get('total_s'))} total",
        f"first token {_seconds(timings.get('first_token_s'))}",
    ]
    if rate:
        time_bits.append(f"{rate:.1f} tokens/s")
    if timings.get("queue_s") and timings["queue_s"] > 0.5:
        time_bits.append(f"waited {_seconds(timings['queue_s'])} for the model")
    rows = [
        ("Task", TASK_NAMES.get(str(provenance.get("task")), str(provenance.get("task")))),
        ("Model", model),
        ("Weights", f"`{provenance.get('weight_hash')}`"),
        ("Precision", f"{provenance.get('quantization')} on {provenance.get('device')}"),
        ("Seed", str(provenance.get("seed"))),
        ("Sampling", _sampling_line(sampling, provenance)),
        ("Time", " · ".join(time_bits)),
        ("Tokens", f"{timings.get('tokens')} generated · {timings.get('prompt_tokens')} in the prompt"),
        ("Ended", STOP_REASONS.get(str(provenance.get("stop_reason")), str(provenance.get("stop_reason")))),
        ("Made by", f"LLM-CXR Studio {provenance.get('app_version')} · {provenance.get('timestamp')}"),
    ]
    lines = "  \n".join(f"**{k}:** {v}" for k, v in rows)  # two spaces: a line break in Markdown
    return lines + (f"\n\n{extra}" if extra else "")


def _sampling_line(sampling: Mapping, provenance: Mapping) -> str:
    """Temperature, top-p, max tokens; for a drawing, its guidance when it was guided or why it was not."""
    line = (
        f"temperature {sampling.get('temperature')} · top-p {sampling.get('top_p')} · "
        f"max {sampling.get('max_new_tokens')} tokens"
    )
    guided = describe_guidance(provenance)
    return f"{line} · {guided}" if guided else line


def candidate_seeds(seed: int | None, n: int) -> list[int | None]:
    """Seeds of n Draw candidates: seed, seed+1, ... when one is given (reproducible), else fresh ones."""
    if seed is None:
        return [None] * n
    return [(seed + i) % 2**31 for i in range(n)]


def parse_seed(value: object) -> int | None:
    """The seed box's value -> an int, or None (random) when blank; raises ValueError on anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and (math.isnan(value) or not value.is_integer()):
        raise ValueError("The seed must be a whole number (or blank for a random one).")
    try:
        seed = int(str(value).strip()) if isinstance(value, str) else int(value)
    except ValueError:
        raise ValueError("The seed must be a whole number (or blank for a random one).") from None
    if not 0 <= seed < 2**31:
        raise ValueError("The seed must be between 0 and 2147483647 (or blank for a random one).")
    return seed


def duration(seconds: float) -> str:
    """A TTL in words: "1 hour", "90 minutes", "2 hours", "30 seconds"."""
    if seconds >= 3600 and seconds % 3600 == 0:
        n = int(seconds // 3600)
        return f"{n} hour" + ("s" if n != 1 else "")
    if seconds >= 60 and seconds % 60 == 0:
        n = int(seconds // 60)
        return f"{n} minute" + ("s" if n != 1 else "")
    return f"{seconds:g} second" + ("s" if seconds != 1 else "")


def expired_note(what: str, ttl_s: float) -> str:
    """What the conversation shows where a file was once the sweeper deleted it (what: "image", ...)."""
    return f"_({what} expired: files are deleted {duration(ttl_s)} after they are made)_"


def label_answer(messages: list[dict], label: str, choices: list[str]) -> None:
    """Name the mode an answer ran in (`label`) on its details bubbles (one per candidate), with one-click
    redo `choices` under the answer's last message (its downloads)."""
    details = [m for m in messages if (m.get("metadata") or {}).get("title", "").startswith(DETAILS_TITLE)]
    for msg in details:
        msg["metadata"]["title"] = f"{label} · {msg['metadata']['title']}"
    if details and choices:  # Gradio shows a message's options only under the conversation's last message
        messages[-1]["options"] = [{"value": c} for c in choices]
