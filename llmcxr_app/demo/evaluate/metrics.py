"""Scores of the demo evaluation: label precision / recall / F1, VQA answer matching, report attributes,
reconstruction error. Pure functions of predictions and truths (no model, no files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from llmcxr_app.demo.data.phantoms import LABELS, Findings
from llmcxr_app.studio.labeler import label_details, parse_answer


def ratio(a: float, b: float) -> float | None:
    """a / b, or None when b is 0 (an undefined score is not a zero score)."""
    return a / b if b else None


def prf(predicted: Sequence[dict[str, bool | None]], truth: Sequence[dict[str, bool]], labels=LABELS) -> dict:
    """Precision, recall, F1 per label and micro-averaged (pooled counts), plus macro-F1.

    A prediction of None (the labeler read the finding as hedged: labeler.label_verdicts) is neither a hit
    nor a miss: that item is left out of the label's counts, and counted in its "uncertain".
    Undefined ratios (nothing predicted / nothing true) are None, not 0; macro-F1 averages the defined ones.
    """
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} truths.")
    per, tot = {}, {"tp": 0, "fp": 0, "fn": 0}
    for lab in labels:
        pairs = [(p[lab], t[lab]) for p, t in zip(predicted, truth, strict=True)]
        scored = [(p, t) for p, t in pairs if p is not None]
        tp = sum(p and t for p, t in scored)
        fp = sum(p and not t for p, t in scored)
        fn = sum(t and not p for p, t in scored)
        per[lab] = {
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "support": tp + fn,
            "uncertain": len(pairs) - len(scored),
        }
        tot = {"tp": tot["tp"] + tp, "fp": tot["fp"] + fp, "fn": tot["fn"] + fn}
    f1s = [v["f1"] for v in per.values() if v["f1"] is not None]
    micro = {
        "precision": ratio(tot["tp"], tot["tp"] + tot["fp"]),
        "recall": ratio(tot["tp"], tot["tp"] + tot["fn"]),
        "f1": ratio(2 * tot["tp"], 2 * tot["tp"] + tot["fp"] + tot["fn"]),
        **tot,
    }
    return {"micro": micro, "macro_f1": sum(f1s) / len(f1s) if f1s else None, "per_label": per}


def answers_match(answer: str, truth: str) -> bool:
    """A VQA answer is right when it normalises (labeler.parse_answer) to the truth's normal form."""
    return parse_answer(answer) == parse_answer(truth)


def reconstruction_error(original: np.ndarray, recon: np.ndarray) -> tuple[float, float]:
    """(MAE, PSNR in dB) of two uint8 [R, R] images, in [0, 1] pixel units (PSNR peak 1, at most 100 dB)."""
    a = original.astype(np.float64) / 255
    b = recon.astype(np.float64) / 255
    mse = max(float(np.mean((a - b) ** 2)), 1e-10)  # identical images would give infinity (not JSON)
    return float(np.mean(np.abs(a - b))), 10 * float(np.log10(1 / mse))


def attribute_accuracy(read: Sequence[Mapping[str, object]], truths: Sequence[Findings]) -> dict:
    """Side / size / zone as read (a report's label_details, a reader's prediction) vs the truth, scored over
    the items where the finding is truly present (a miss counts as wrong); accuracy None when there are none.
    ``read_as`` counts what was read for each true value ({"right": {"bilateral": 9, "none": 3, ...}}), so a
    low accuracy says whether the finding was missed, misplaced or drawn on both sides."""
    if len(read) != len(truths):
        raise ValueError(f"{len(read)} readings for {len(truths)} truths.")
    out = {}
    for name in Findings().attributes():
        pairs = [(r[name], f.attributes()[name]) for r, f in zip(read, truths, strict=True)]
        pairs = [(a, b) for a, b in pairs if b != "none"]
        accuracy = ratio(sum(a == b for a, b in pairs), len(pairs))
        out[name] = {"accuracy": accuracy, "n": len(pairs), "read_as": read_as(pairs)}
    return out


def read_as(pairs: Sequence[tuple[object, object]]) -> dict[str, dict[str, int]]:
    """How often each true value (second of a pair) was read as each value (first; None: a failed
    drawing), e.g. {"right": {"bilateral": 9, "none": 3, "right": 2}}."""
    out: dict[str, dict[str, int]] = {}
    for got, truth in pairs:
        row = out.setdefault(str(truth), {})
        row[str(got)] = row.get(str(got), 0) + 1
    return out


def report_attributes(texts: Sequence[str], truths: Sequence[Findings]) -> dict:
    """attribute_accuracy of the side / size / zone the rule-based labeler reads from each report."""
    return attribute_accuracy([label_details(x) for x in texts], truths)
