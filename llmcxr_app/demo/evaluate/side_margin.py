"""Does the model know which side a finding is on? A teacher-forced check on validation phantoms.

    python -m llmcxr_app.demo.evaluate.side_margin --weights OUT [--n 60] [--out FILE]

For each validation phantom with a one-sided finding (data/splits.py's seeds, in order), the phantom's own
image ids are scored under two drawing requests: the template report of its findings, and of the same
findings on the other side (Findings.mirrored). The margin is the difference in log-probability (nats)
summed over the grid cells that show the findings (data.finding_cells; "focus") and over all 256 cells
("all"). A model that draws a finding where the text puts it scores the true side higher: a positive
margin, large against the presence margin (the true findings against a normal chest, also reported).
"swapped" is what a guided drawing pushes by, and what training's attribute contrast raises
(train/losses.contrast_loss): the text with side, size and zone swapped (Findings.swapped), its "focus"
summed over the cells of either findings (data/pairs.contrast_cells).
Sampled drawings (validation.py) say the same thing noisily: with about 20 effusions asked for, one drawing
moves a side accuracy by 0.05; this margin moves smoothly with training. docs/DEMO_MODEL.md tabulates it
by round.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llmcxr_app import protocol
from llmcxr_app.config import RuntimeConfig, Settings
from llmcxr_app.demo.data import pairs, samples, splits
from llmcxr_app.demo.data.findings import Findings
from llmcxr_app.demo.data.phantoms import make_phantom
from llmcxr_app.demo.evaluate.evaluation import demo_location
from llmcxr_app.studio.facade import Studio


def code_logprobs(model, tokenizer, text: str, codes: Sequence[int], codebook_size: int) -> torch.Tensor:
    """log p of each image id of `codes` (teacher forced) after the drawing request for `text`; [len(codes)]
    float32 nats, in grid order. The ids are laid out as in training (protocol.build_training_ids)."""
    ids, n_prompt = protocol.build_training_ids(
        tokenizer,
        protocol.REPORT_TO_CXR_INSTRUCTIONS[0],
        input_text=text,
        response_codes=list(codes),
        codebook_size=codebook_size,
        grid_tokens=len(codes),
    )
    x = torch.tensor([ids])
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), dim=-1)
    per_id = logp.gather(1, x[0, 1:, None])[:, 0]  # per_id[i] = log p(ids[i + 1] | ids[: i + 1])
    # ids[n_prompt] is the image's opening "<"; code k sits at n_prompt + 1 + k, predicted from n_prompt + k
    return per_id[n_prompt : n_prompt + len(codes)]


@dataclass(frozen=True)
class Margin:
    """One phantom's margins, in nats (positive: the first text explains the image ids better)."""

    focus: float  # summed over the cells that show the findings
    all: float  # summed over every cell
    cells: int  # how many cells show the findings


def margin(logp_a: torch.Tensor, logp_b: torch.Tensor, cells: Sequence[int]) -> Margin:
    """Margin of text a over text b from their per-id log-probabilities ([n] each) of the same ids."""
    diff = (logp_a - logp_b).double()
    focus = float(diff[list(cells)].sum()) if len(cells) else 0.0
    return Margin(focus=focus, all=float(diff.sum()), cells=len(cells))


def _summary(rows: list[Margin]) -> dict:
    focus = np.array([r.focus for r in rows])
    every = np.array([r.all for r in rows])
    return {
        "focus_margin_mean": float(focus.mean()),
        "focus_prefers_true": float((focus > 0).mean()),
        "all_margin_mean": float(every.mean()),
        "all_prefers_true": float((every > 0).mean()),
        "mean_cells": float(np.mean([r.cells for r in rows])),
    }


def evaluate(studio: Studio, n: int) -> dict:
    """Side and presence margins over the first `n` validation phantoms with a one-sided finding."""
    tokenizer, model = studio.llm.tokenizer, studio.llm.model
    side, presence, swapped = [], [], []
    for seed in splits.validation_seeds(splits.VAL_SEED_STOP - splits.VAL_SEED_START):
        if len(side) == n:
            break
        phantom = make_phantom(seed)
        findings = phantom.findings
        if not findings.is_lateral():
            continue
        codes = studio.prepare(phantom.image).codes
        sample = samples.render_samples([seed], studio.vqgan.resolution)[0]
        cells = samples.finding_cells(sample, studio.vqgan.grid)

        def logp(f: Findings, codes=codes) -> torch.Tensor:
            return code_logprobs(model, tokenizer, pairs.findings_text(f), codes, studio.vqgan.n_embed)

        true = logp(findings)
        side.append(margin(true, logp(findings.mirrored()), cells))
        presence.append(margin(true, logp(Findings()), cells))
        both = pairs.contrast_cells(sample, studio.vqgan.grid)
        swapped.append(margin(true, logp(findings.swapped()), both))
    summaries = {"side": _summary(side), "presence": _summary(presence), "swapped": _summary(swapped)}
    return {"n": len(side), **summaries}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--n", type=int, default=60, help="validation phantoms with a one-sided finding")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    runtime = RuntimeConfig(device="cpu", fast_path=False, warmup=False)
    studio = Studio.from_settings(Settings(model=demo_location(args.weights), runtime=runtime))
    result = {
        "weights": str(args.weights),
        **evaluate(studio, args.n),
        "command": "python -m llmcxr_app.demo.evaluate.side_margin " + " ".join(argv or sys.argv[1:]),
    }
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
