"""Where two greedy runs of one model part, and by how much the model preferred the baseline's id there.

Two paths that compute the same function in different kernel orders (eager against compiled, a DynamicCache
against a StaticCache) give logits that differ in the last bits. Greedy decoding then flips wherever the top
two ids are nearly tied, and everything after the flip differs. A flip at a near-tie is rounding; a flip where
the model clearly preferred the baseline's id is a bug. So each disagreement is reported with its position and
the teacher-forced margin: logit(baseline id) - logit(other id) at that position, from one plain forward of
the model over the prompt and the baseline's ids before it (no cache, eager).
"""

from __future__ import annotations

from typing import Any

import torch


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first index where ``a`` and ``b`` differ (a shorter one ending early counts); None if equal."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


@torch.inference_mode()
def choice_margin(model: Any, prefix: list[int], preferred: int, other: int) -> float:
    """logit[preferred] - logit[other] (float32, nats of log-probability) for the id after ``prefix``."""
    device = next(model.parameters()).device
    ids = torch.tensor([prefix], device=device)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].float()
    return float(logits[preferred] - logits[other])


def compare(model: Any, prompt: list[int], baseline: list[int], ids: list[int]) -> dict:
    """How ``ids`` (generated after ``prompt``) agree with the ``baseline`` run's ids.

    Returns {"match", "first_difference" (index into the generated ids, or None), "margin" (see
    choice_margin; None when equal or when one run only stopped earlier)}.
    """
    k = first_difference(baseline, ids)
    margin = None
    if k is not None and k < len(baseline) and k < len(ids):
        margin = choice_margin(model, prompt + baseline[:k], baseline[k], ids[k])
    return {"match": k is None, "first_difference": k, "margin": margin}


def summary(agreement: dict[str, dict]) -> str:
    """One table cell: "yes", or each differing run's position and margin ("no: text@37 (0.004)")."""
    parts = []
    for kind, a in agreement.items():
        if not a["match"]:
            margin = "" if a["margin"] is None else f" ({a['margin']:.3g})"
            parts.append(f"{kind}@{a['first_difference']}{margin}")
    return "yes" if not parts else "no: " + ", ".join(parts)
