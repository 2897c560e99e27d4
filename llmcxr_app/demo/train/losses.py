"""The demo LLM's training losses: completion-only cross-entropy, and the attribute contrast of pairs.

Shapes: B sequences of T ids, V vocabulary rows, P contrast pairs, G image ids per grid (256).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from llmcxr_app.demo.data.pairs import Pair


def completion_loss(
    logits: torch.Tensor, labels: torch.Tensor, weighting: str = "token", weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Next-token cross-entropy on the ids whose label is not -100 (the response: completion-only loss).

    logits [B, T, V] float, labels [B, T] (-100 = no loss). ``token`` averages over every target id in the
    batch (upstream's trainer); ``example`` averages each example over its own targets first, then over the
    batch, so short answers (VQA, reports) are not drowned by the 257 targets of a drawing. ``weights``
    [B, T] (per position of labels; data.focus_weights) turns either mean into a weighted mean.
    """
    target = labels[:, 1:]
    ce = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), target, ignore_index=-100, reduction="none"
    )  # [B, T-1]
    valid = (target != -100).to(ce.dtype)
    if weights is not None:
        valid = valid * weights[:, 1:].to(ce.dtype)
    if weighting == "token":
        return (ce * valid).sum() / valid.sum().clamp(min=1)
    if weighting == "example":
        per_example = (ce * valid).sum(1) / valid.sum(1).clamp(min=1)
        has_targets = valid.sum(1) > 0
        return per_example[has_targets].mean()
    raise ValueError(f"Unknown loss weighting {weighting!r}; use 'token' or 'example'.")


def pair_logprobs(
    model: torch.nn.Module, pairs: Sequence[Pair], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced log p (nats) of each image id of each pair, after its true and after its swapped text:
    two float32 tensors [P, G] from one forward over the 2P right-padded sequences."""
    seqs = [p.true_ids for p in pairs] + [p.swapped_ids for p in pairs]
    starts = torch.tensor([p.true_start for p in pairs] + [p.swapped_start for p in pairs])
    ids = torch.full((len(seqs), max(map(len, seqs))), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    # The position before code k (the opening "<" for k = 0) predicts it.
    where = starts[:, None] + torch.arange(pairs[0].n_codes)  # [2P, G]
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    rows = logits.gather(1, where.to(device)[..., None].expand(-1, -1, logits.shape[-1]))  # [2P, G, V]
    targets = ids.gather(1, where + 1).to(device)
    logp = torch.log_softmax(rows.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    return logp[: len(pairs)], logp[len(pairs) :]


def contrast_loss(
    logp_true: torch.Tensor,
    logp_swapped: torch.Tensor,
    cells: Sequence[Sequence[int]],
    beta: float,
    reference: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, margins [P]): each pair's margin is the log-probability its first sequence's image ids gain
    over the second's, summed over the pair's cells (nats), less its ``reference`` [P] (a reference model's
    margin; None = 0). The loss, softplus(-beta * margin) averaged over the pairs, is the logistic loss of
    preferring the first. It fades once a margin is a few 1 / beta nats, so it asks that the two be told
    apart, not that the second be impossible.

    Attribute contrast: the same image ids after the true and the swapped text, no reference. Preference
    (train/preference.py): two drawings of one request, the starting model's margin as reference; this is
    then the DPO loss."""
    mask = torch.zeros_like(logp_true)
    for i, where in enumerate(cells):
        mask[i, list(where)] = 1.0
    margins = ((logp_true - logp_swapped) * mask).sum(1)
    if reference is not None:
        margins = margins - reference.to(margins)
    return F.softplus(-beta * margins).mean(), margins


def pair_contrast(
    model: torch.nn.Module, pairs: Sequence[Pair], beta: float, pad_id: int, device: torch.device
) -> tuple[torch.Tensor, float]:
    """(contrast_loss of `pairs` under `model`, their mean margin over the reference in nats): one training
    step's contrast."""
    logp_true, logp_swapped = pair_logprobs(model, pairs, pad_id, device)
    reference = torch.tensor([p.reference for p in pairs])
    loss, margins = contrast_loss(logp_true, logp_swapped, [p.cells for p in pairs], beta, reference)
    return loss, float(margins.detach().mean())
