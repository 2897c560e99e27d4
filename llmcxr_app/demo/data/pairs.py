"""Contrast pairs for training the drawing's attributes: one phantom's image ids under its own findings text
and under the text the app's guidance pushes away from.

A guided drawing (studio/guidance.py, "swapped") samples each image id by how much better the findings
explain it than the same findings with side, size and zone swapped. The demo model hardly tells the two
texts apart (docs/DEMO_MODEL.md: about 1 nat over a finding's cells), so that guidance has little to push
with. A pair gives training that difference directly (train/losses.contrast_loss): the same image ids after
two texts that differ only in the attribute words. Both texts are the template reports (the first wording)
that the app gives a canonical-prompt checkpoint, so training sees the two prompts of a guided drawing
(rounds 22 and 22b were trained so; since then the app's negative leaves a small effusion out, which the
pairs do not, so that the recipe still rebuilds those rounds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmcxr_app import protocol
from llmcxr_app.demo.data.findings import Findings
from llmcxr_app.demo.data.phantoms import render
from llmcxr_app.demo.data.samples import PHANTOM_SIZE, Sample, finding_cells
from llmcxr_app.imaging.images import to_model_input
from llmcxr_app.studio import template_text


@dataclass(frozen=True)
class Pair:
    """One phantom's image ids after its own findings text (true) and after the swapped one."""

    true_ids: list[int]  # drawing request for the phantom's findings, then "<", its codes, ">", "### End"
    swapped_ids: list[int]  # the same with the swapped findings' text: the same image ids
    true_start: int  # index in true_ids of the image's opening "<" (code k is at true_start + 1 + k)
    swapped_start: int  # the same in swapped_ids
    n_codes: int  # image ids in the grid (256 for the official 16 x 16)
    cells: tuple[int, ...]  # grid cells (row-major) where either findings would show
    reference: float = 0.0  # the margin (nats) a reference model already has over the cells: 0 for the
    #                         attribute contrast; a preference pair's starting model (train/preference.py)


def findings_text(findings: Findings) -> str:
    """The template report (first wording) of ``findings``: what the app gives the demo checkpoint."""
    return template_text.report(findings.label_vector(), findings.attributes(), template_text.FIRST)


# What a pair's second text states (TrainConfig.contrast_against): "swapped" = Findings.swapped (rounds 22,
# 22b); "negative" = the app's guidance negative (Findings.guidance_negative: a small effusion left out).
AGAINST = {"swapped": Findings.swapped, "negative": Findings.guidance_negative}


def _other(findings: Findings, against: str) -> Findings:
    """The findings ``findings`` are contrasted with (AGAINST[against])."""
    if against not in AGAINST:
        raise ValueError(f"Unknown contrast_against {against!r}; use one of {sorted(AGAINST)}.")
    return AGAINST[against](findings)


def contrast_cells(sample: Sample, grid: int, against: str = "swapped") -> tuple[int, ...]:
    """The cells that show the sample's findings or would show the findings it is contrasted with
    (AGAINST), drawn on the same anatomy (data.finding_cells of both): where the two texts should disagree
    about the image."""
    swapped = _other(sample.findings, against)
    image = render(swapped, sample.seed, size=PHANTOM_SIZE)
    pixels = np.asarray(to_model_input(image, sample.pixels.shape[0]).image.convert("L"))
    twin = Sample(sample.seed, pixels, swapped, "")
    return tuple(sorted(set(finding_cells(sample, grid)) | set(finding_cells(twin, grid))))


def contrast_pairs(
    tokenizer,
    samples: Sequence[Sample],
    codes: Sequence[Sequence[int]],
    *,
    codebook_size: int,
    grid: int,
    rng: np.random.Generator,
    cells: Sequence[Sequence[int]] | None = None,
    against: str = "swapped",
) -> list[Pair]:
    """A Pair for each sample whose findings have a side, size or zone to swap; both texts of a pair get
    the same drawing instruction (a random one of upstream's). ``cells``: each sample's contrast_cells when
    the caller has them already (else computed here); ``against``: what the second text states (AGAINST)."""
    out = []
    known = cells if cells is not None else [None] * len(samples)
    for sample, code, where in zip(samples, codes, known, strict=True):
        swapped = _other(sample.findings, against)
        if swapped == sample.findings:
            continue
        instruction = str(rng.choice(protocol.REPORT_TO_CXR_INSTRUCTIONS))
        built = [
            protocol.build_training_ids(
                tokenizer,
                instruction,
                input_text=findings_text(f),
                response_codes=[int(c) for c in code],
                codebook_size=codebook_size,
                grid_tokens=grid * grid,
            )
            for f in (sample.findings, swapped)
        ]
        (true_ids, true_start), (swapped_ids, swapped_start) = built
        where = tuple(where) if where is not None else contrast_cells(sample, grid, against)
        out.append(Pair(true_ids, swapped_ids, true_start, swapped_start, grid * grid, where))
    return out
