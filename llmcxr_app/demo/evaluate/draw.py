"""Report -> CXR evaluation: draw each held-out findings text through the app's path, let the independent
reader (reader.py, a CNN that never sees the LLM) read the image, and score it against the phantom's findings.

With several candidates per item, the app's self-check (the model's own read-back, selfcheck.py; never the
reader) picks the one that is scored, the one the app names; the first candidate alone is scored too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from llmcxr_app.config import SamplingConfig
from llmcxr_app.demo.data.phantoms import LABELS, Findings
from llmcxr_app.demo.data.reports import write_findings_prompt
from llmcxr_app.demo.evaluate import reader as reader_mod
from llmcxr_app.demo.evaluate.metrics import prf, ratio
from llmcxr_app.studio import selfcheck
from llmcxr_app.studio.facade import Result, Studio, StudioInputError

CANDIDATE_SEED_STRIDE = 10_000_000  # candidate k of item i samples with seed i + k * stride: never shared


def _failed(f: Findings) -> dict:
    """The reading of a draw that produced no valid image: wrong on every label and attribute."""
    return {
        **{lab: not v for lab, v in f.label_vector().items()},
        **{name: "no image" for name in reader_mod.ATTRIBUTES},
    }


def draw_one(studio: Studio, prompt: str, sampling: SamplingConfig, verbatim: bool = False) -> Result | None:
    """One drawing through the app's path (``verbatim``: the model reads ``prompt`` as written even when its
    checkpoint draws from the labeler's reading, Studio.draw); None when it is not a valid image of
    grid_tokens codes."""
    result = Studio.finish(studio.draw(prompt, sampling=sampling, preview_every=0, verbatim=verbatim))
    codes = result.codes or []
    ok = (
        result.image is not None
        and len(codes) == studio.vqgan.grid_tokens
        and all(0 <= c < studio.vqgan.n_embed for c in codes)
    )
    return result if ok else None


def _draw_item(
    studio: Studio, prompt: str, sampling: SamplingConfig, candidates: int, verbatim: bool
) -> list[Result | None]:
    """The candidates of one findings item; candidate k samples with seed sampling.seed + k * stride."""
    return [
        draw_one(studio, prompt, replace(sampling, seed=sampling.seed + k * CANDIDATE_SEED_STRIDE), verbatim)
        for k in range(candidates)
    ]


def _read_item(
    studio: Studio, reader: reader_mod.Reader, prompt: str, results: list[Result | None]
) -> tuple[dict | None, dict | None, bool | None]:
    """(reading of the candidate the self-check picks, reading of the first candidate, whether the picked
    candidate's read-back agreed with the prompt: None with one candidate or none valid). A reading is None
    for an invalid drawing."""
    valid = [r for r in results if r is not None]
    chosen, agreed = results[0], None
    if len(results) > 1 and valid:
        checks = [selfcheck.check(studio, prompt, r) for r in valid]
        pick = selfcheck.best(checks)
        chosen = valid[pick]
        agreed = checks[pick].matches
    first = reader.predict([results[0].image])[0] if results[0] is not None else None
    return first if chosen is results[0] else reader.predict([chosen.image])[0], first, agreed


def evaluate_draw(
    studio: Studio,
    reader: reader_mod.Reader,
    truths: list[Findings],
    *,
    seed_start: int,
    temperature: float,
    top_p: float,
    candidates: int = 1,
    log: Callable[[str], None] = lambda _m: None,
    prompts: list[str] | None = None,
    verbatim: bool = False,
    guidance: float | None = None,
    guide_away_from: str = SamplingConfig.guide_away_from,
) -> tuple[dict, list[float]]:
    """Draw each findings text, read the image; failed items (no valid image) count as wrong everywhere.

    Item i draws write_findings_prompt(truths[i]) with seed seed_start + i (top-p sampling, constrained to
    grid_tokens codes). With candidates > 1 it draws that many and the self-check picks one; the first
    candidate's scores (the same draw as a one-candidate run) are kept under "first_candidate".
    `prompts`: the findings texts to draw instead (one per item, e.g. the validation split's).
    `verbatim`: the model reads each text as written (draw_one). `guidance`, `guide_away_from`: their
    SamplingConfig fields (guidance None: the checkpoint's default, as the app draws).
    Returns (scores, tokens per second of each drawing).
    """
    preds: list[dict | None] = []
    firsts: list[dict | None] = []
    errors, tok_s, agreed = [], [], []
    for i, f in enumerate(truths):
        seed = seed_start + i
        prompt = prompts[i] if prompts else write_findings_prompt(f, np.random.default_rng([seed, 0xD2A]))
        sampling = SamplingConfig(
            temperature=temperature,
            top_p=top_p,
            top_k=0,
            seed=seed,
            guidance=guidance,
            guide_away_from=guide_away_from,
        )
        try:
            results = _draw_item(studio, prompt, sampling, candidates, verbatim)
        except StudioInputError as exc:  # e.g. findings longer than the context: an item the model failed
            errors.append(str(exc))  # phantom findings only: no user or patient text
            preds.append(None)
            firsts.append(None)
            continue
        tok_s += [r.timings.get("tokens_per_s") or 0.0 for r in results if r is not None]
        pred, first, agree = _read_item(studio, reader, prompt, results)
        preds.append(pred)
        firsts.append(first)
        if agree is not None:
            agreed.append(agree)
        if i % 10 == 0:
            log(f"draw {i + 1}/{len(truths)}")
    return _scores(preds, firsts, truths, errors, agreed, candidates), tok_s


def _scores(
    preds: list[dict | None],
    firsts: list[dict | None],
    truths: list[Findings],
    errors: list[str],
    agreed: list[bool],
    candidates: int,
) -> dict:
    """The reader's scores over all items (picked candidates; the first candidates too when several)."""
    valid_n = sum(p is not None for p in preds)
    preds = [p if p is not None else _failed(f) for p, f in zip(preds, truths, strict=True)]
    draw = reader_mod.score(preds, truths)
    draw["prf"] = prf([{k: p[k] for k in LABELS} for p in preds], [f.label_vector() for f in truths])
    draw["valid_fraction"] = ratio(valid_n, len(truths))
    draw["input_errors"] = errors[:5]
    draw["n_input_errors"] = len(errors)
    # What a reader answering "absent" to everything would score: the floor the mean accuracy is read against.
    n_absent = sum(not v for f in truths for v in f.label_vector().values())
    draw["label_accuracy_mean_all_absent"] = ratio(n_absent, len(truths) * len(LABELS))
    draw["candidates"] = candidates
    if candidates > 1:
        firsts = [p if p is not None else _failed(f) for p, f in zip(firsts, truths, strict=True)]
        first = reader_mod.score(firsts, truths)
        draw["first_candidate"] = {
            **{k: first[k] for k in ("label_accuracy_mean", "exact_match", "label_accuracy")},
            "prf": prf([{k: p[k] for k in LABELS} for p in firsts], [f.label_vector() for f in truths]),
            "attribute_accuracy": first.get("attribute_accuracy"),
        }
        draw["self_check_agreed_fraction"] = ratio(sum(agreed), len(agreed))
    return draw
