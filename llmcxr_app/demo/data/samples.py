"""Phantom data for the demo model: what the model sees, and LLM-CXR instruction examples built from it.

Seeds below EVAL_SEED_START are training data; evaluation only uses seeds at or above it.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llmcxr_app import protocol
from llmcxr_app.demo.data import findings, language, phantoms, questions, reports, splits
from llmcxr_app.demo.data.phantoms import Findings, make_phantom
from llmcxr_app.imaging import images
from llmcxr_app.imaging.images import to_model_input
from llmcxr_app.studio import labeler, template_text

EVAL_SEED_START = 1_000_000  # held-out phantoms: never used in training
PHANTOM_SIZE = 256  # phantoms are drawn at this size and reach the model through the app's own preprocessing


@dataclass(frozen=True)
class Sample:
    """One phantom as the model sees it."""

    seed: int  # make_phantom(seed) reproduces it
    pixels: np.ndarray  # uint8 [R, R]: the model-resolution grayscale input
    findings: Findings  # ground truth
    report: str  # the phantom's report


@functools.cache
def generator_version() -> str:
    """12 hex chars of sha256 over the source of everything that makes a Sample: the findings sampler, the
    phantom renderer, the report writer and its template language (template_text.py), the labeler's label
    list and the app's preprocessing (images.py).

    Any edit to them changes it, so a sample cache written by an older generator is never reused.
    """
    h = hashlib.sha256(f"phantom size {PHANTOM_SIZE}".encode())
    for module in (findings, phantoms, reports, template_text, labeler, images):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:12]


def _cached(cache: Path | None, resolution: int) -> dict[int, Sample]:
    """Samples of `cache` written by this generator version at this resolution (else none)."""
    if cache is None or not cache.exists():
        return {}
    stored = pickle.loads(cache.read_bytes())
    if not isinstance(stored, dict) or stored.get("key") != (generator_version(), resolution):
        return {}  # an older format, generator or resolution: render afresh
    return {s.seed: s for s in stored["samples"]}


def render_samples(seeds: Sequence[int], resolution: int, cache: Path | None = None) -> list[Sample]:
    """Draw phantoms and preprocess them exactly as the app preprocesses an upload.

    `cache`: a pickle of our own samples to reuse between runs (rendering thousands takes minutes), keyed by
    the generator's version and the resolution; seeds it already holds are reused, so growing the training
    set renders only the new ones.
    """
    seeds = [int(s) for s in seeds]
    known = _cached(cache, resolution)
    out = []
    for seed in seeds:
        if seed in known:
            out.append(known[seed])
            continue
        ph = make_phantom(seed, size=PHANTOM_SIZE)
        view = to_model_input(ph.image, resolution)
        out.append(Sample(seed, np.asarray(view.image.convert("L")), ph.findings, ph.report))
    if cache is not None and any(seed not in known for seed in seeds):
        cache.parent.mkdir(parents=True, exist_ok=True)
        payload = {"key": (generator_version(), resolution), "samples": out}
        cache.write_bytes(pickle.dumps(payload))
    return out


def mirror_twins(samples: Sequence[Sample], resolution: int) -> list[Sample]:
    """For each sample with a one-sided finding, its twin: the same anatomy (seed) with the findings on the
    other side (Findings.mirrored), preprocessed as the app does, with a report written for the twin.

    A pair differs only in where the finding sits, so between them only the side word of the text explains
    the difference (round 15 measured it: docs/DEMO_MODEL.md). The twin keeps its source's seed:
    finding_cells redraws that anatomy.
    """
    out = []
    for sample in samples:
        if not sample.findings.is_lateral():
            continue
        twin = sample.findings.mirrored()
        image = phantoms.render(twin, sample.seed, size=PHANTOM_SIZE)
        view = to_model_input(image, resolution)
        report = reports.write_report(twin, np.random.default_rng([sample.seed, 0x7A1]))
        out.append(Sample(sample.seed, np.asarray(view.image.convert("L")), twin, report))
    return out


def round_samples(samples: list[Sample], resolution: int, twins: bool, hold_out: bool) -> list[Sample]:
    """A training round's samples: with ``twins`` their mirror twins added; with ``hold_out`` the held-out
    finding combinations (splits.HELD_OUT) removed, twins included. The combinations are what is held
    out, so a held-out phantom's twin stays when its mirrored findings are not one of them."""
    if twins:
        samples = samples + mirror_twins(samples, resolution)
    return [s for s in samples if not (hold_out and splits.held_out(s.findings))]


def corpus(samples: list[Sample], rng: np.random.Generator) -> list[str]:
    """Every kind of text the model reads or writes, for the tokenizer."""
    # The prompt frame is in every example: weight it so BPE compresses it well.
    frame = [protocol.INTRO_BLURB, *protocol.REPORT_TO_CXR_INSTRUCTIONS, *protocol.CXR_TO_REPORT_INSTRUCTIONS]
    texts = frame * 100
    for s in samples[:1500]:
        texts.append(s.report)
        texts.append(reports.write_findings_prompt(s.findings, rng))
        texts += [f"{q} {a}" for q, a in reports.make_qa(s.findings, rng, 4)]
    texts += [f"{q} {a}" for q, a in reports.plain_instructions(rng, 200)]
    return texts


def to_tensor(pixels: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 [R, R] (or a list of them) -> float [B, 3, R, R] in [-1, 1], the VQ-GAN's input."""
    arr = np.stack(pixels) if isinstance(pixels, (list, tuple)) else pixels[None]
    x = torch.from_numpy(arr).float().div(255) * 2 - 1  # as the app's preprocessing (ToTensor, x*2-1)
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


@dataclass(frozen=True)
class Example:
    """One tokenized training example."""

    ids: list[int]  # full sequence: prompt, response, "### End"
    n_prompt: int  # leading ids excluded from the loss (through the response key)
    task: str  # protocol.TASK_*
    focus: tuple[int, ...] = ()  # positions in ids of a drawing's image ids that show its findings (below)


def build_examples(
    tokenizer,
    samples: Sequence[Sample],
    codes: Sequence[Sequence[int]],
    *,
    codebook_size: int,
    grid_tokens: int,
    rng: np.random.Generator,
    qa_per_image: int = 2,
    plain_fraction: float = 0.1,
    rich_fraction: float = 0.0,
    focus: Sequence[Sequence[int]] | None = None,
) -> list[Example]:
    """Both directions, VQA and plain instructions, in upstream's format (random instruction phrasing).

    rich_fraction: the share of drawing texts and of each phantom's VQA questions written in clinician
    style (language.py / questions.py) instead of the templates; 0 keeps the template examples unchanged.
    focus: per sample, the grid cells (row-major code indices) that show its findings (finding_cells);
    its drawing example's `focus` holds the positions of those cells' image ids.
    """
    kw = {"codebook_size": codebook_size, "grid_tokens": grid_tokens}
    out: list[Example] = []

    def add(task: str, instruction: str, focus: Sequence[int] = (), **fields) -> None:
        ids, n_prompt = protocol.build_training_ids(tokenizer, instruction, **fields, **kw)
        # An image response is "<", the codes, ">": code k sits at n_prompt + 1 + k.
        out.append(Example(ids, n_prompt, task, tuple(n_prompt + 1 + k for k in focus)))

    cells = focus if focus is not None else [()] * len(samples)
    for sample, code, where in zip(samples, codes, cells, strict=True):
        code = [int(c) for c in code]
        # report -> CXR: half the time the full report, half a short findings text a user would type.
        text = _draw_text(sample, rng, rich_fraction)
        add(
            protocol.TASK_DRAW,
            str(rng.choice(protocol.REPORT_TO_CXR_INSTRUCTIONS)),
            input_text=text,
            response_codes=code,
            focus=where,
        )
        add(
            protocol.TASK_REPORT,
            str(rng.choice(protocol.CXR_TO_REPORT_INSTRUCTIONS)),
            image_codes=code,
            response_text=sample.report,
        )
        rich_qa = rich_fraction > 0 and rng.random() < rich_fraction
        qa = questions.make_rich_qa if rich_qa else reports.make_qa
        for question, answer in qa(sample.findings, rng, qa_per_image):
            add(protocol.TASK_VQA, question, image_codes=code, response_text=answer)
    n_plain = int(round(plain_fraction * len(samples)))
    for question, answer in reports.plain_instructions(rng, n_plain):
        add(protocol.TASK_INSTRUCT, question, response_text=answer)
    return out


def _draw_text(sample: Sample, rng: np.random.Generator, rich_fraction: float) -> str:
    """A drawing request's text: clinician style (rich_fraction of the time), else the template report or
    template findings prompt (half each)."""
    if rich_fraction > 0 and rng.random() < rich_fraction:
        return language.findings_text(sample.findings, rng)
    return sample.report if rng.random() < 0.5 else reports.write_findings_prompt(sample.findings, rng)


def collate(batch: Sequence[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels) with -100 on the prompt and the padding."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        mask[i, :n] = 1
        labels[i, e.n_prompt : n] = torch.tensor(e.ids[e.n_prompt :])
    return ids, mask, labels


def corrupt_image_context(
    ids: torch.Tensor,
    batch: Sequence[Example],
    *,
    first_image_id: int,
    codebook_size: int,
    grid_tokens: int,
    fraction: float,
    rng: np.random.Generator,
) -> torch.Tensor:
    """A copy of ids [B, T] in which ``fraction`` of each drawing's image ids, picked at random, are replaced
    by random image ids. Only the model's input changes (collate's labels keep the true ids).

    The idea: under teacher forcing most image ids follow from the ids above and to the left (anatomy runs
    on); with part of that context unreliable, more of the next-id prediction has to come from the text
    (where the finding is, on which side). Round 16 measured it on the demo model and it did not help
    (docs/DEMO_MODEL.md); it stays a recipe knob, off by default.
    """
    out = ids.clone()
    for i, e in enumerate(batch):
        if e.task != protocol.TASK_DRAW:
            continue
        picked = np.flatnonzero(rng.random(grid_tokens) < fraction)
        noise = rng.integers(first_image_id, first_image_id + codebook_size, size=len(picked))
        out[i, e.n_prompt + 1 + picked] = torch.from_numpy(noise)
    return out


def focus_weights(batch: Sequence[Example], width: int, weight: float) -> torch.Tensor:
    """[B, width] loss weights over ids positions: ``weight`` at each example's focus, 1 elsewhere."""
    out = torch.ones((len(batch), width))
    for i, e in enumerate(batch):
        if e.focus:
            out[i, list(e.focus)] = weight
    return out


FOCUS_MIN_DIFFERENCE = 4.0  # grey levels (of 255): a cell whose mean differs by more shows a finding


def finding_cells(sample: Sample, grid: int) -> list[int]:
    """The grid cells (row-major, grid x grid over the model-resolution image) where the sample's findings
    are: its anatomy drawn again without findings (phantoms.render, same anatomy seed, same preprocessing)
    differs there by more than FOCUS_MIN_DIFFERENCE on average. Pixels, not codes: a VQ code can flip
    where nothing was drawn. [] for a normal phantom."""
    if sample.findings.is_normal():
        return []
    twin = phantoms.render(Findings(), sample.seed, size=PHANTOM_SIZE)
    side = sample.pixels.shape[0]
    plain = np.asarray(to_model_input(twin, side).image.convert("L"), dtype=np.float32)
    cell = side // grid
    diff = np.abs(sample.pixels.astype(np.float32) - plain).reshape(grid, cell, grid, cell).mean((1, 3))
    return [int(k) for k in np.flatnonzero(diff.ravel() > FOCUS_MIN_DIFFERENCE)]


def length_batches(examples: Sequence[Example], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Batches of similar lengths (less padding), in random order."""
    order = rng.permutation(len(examples))
    chunk = batch_size * 32
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(examples[i].ids))
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return [[int(i) for i in b] for b in batches if len(b) == batch_size]
