"""Preference pairs from the demo model's own drawings: a round of direct preference optimisation (DPO).

Why: teacher forcing only ever shows the model the true image ids above and to the left of the one it
predicts. Trained that way, the demo model prefers the true findings text over the swapped one by some 25
nats on its training pairs, yet when it draws a one-sided effusion from its own ids it still runs the
fluid level on across both lung bases. Its own drawings are where that goes wrong, so this stage learns
from them:

1. A critic reads drawings: a reader CNN (evaluate/reader.py's network) trained here on the stage's own
   training phantoms and their VQ-GAN reconstructions. It is not the evaluation reader, and none of the
   reader's phantoms (seeds >= 2,000,000) are used, so the judge of the validation and test splits is not
   the network whose reading training pleased.
2. For each of `preference_prompts` training phantoms with a side, size or zone to place, the starting
   model draws `preference_candidates` candidates from the phantom's template report, as the app drew when
   round 23 ran (its guidance away from the swapped findings, upstream's sampling; the app's negative has
   since left a small effusion out, which these candidates keep, so that the recipe repeats round 23).
3. The critic reads each candidate; its agreement with the request is the number of the 7 findings and 4
   attributes read as asked (`agreement`). The candidate that agrees most is preferred over the one that
   agrees least (a Pair: true_ids the preferred, swapped_ids the other; prompts with a tie give no pair).
4. Training (train/losses.contrast_loss with each pair's `reference`) raises the preferred candidate's
   log-probability over the other's, measured against the starting model's own margin: the DPO loss.

Shapes: G image ids per grid (256), P pairs, N candidates per prompt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from llmcxr_app import protocol
from llmcxr_app.config import SamplingConfig
from llmcxr_app.demo.data.findings import Findings
from llmcxr_app.demo.data.pairs import Pair, findings_text
from llmcxr_app.demo.data.samples import Sample
from llmcxr_app.demo.evaluate import reader as reader_mod
from llmcxr_app.demo.train.losses import pair_logprobs
from llmcxr_app.engine.generation import generate_image
from llmcxr_app.modeling.vqgan import VQGAN

# The critic's share of phantoms also seen as their VQ-GAN reconstruction (the evaluation reader's share):
# drawings are decoded by the same VQ-GAN, so the critic must read its blur.
CRITIC_RECON_FRACTION = 0.3
# The instruction the app draws with (studio/facade.py): candidates and pairs use it too.
DRAW_INSTRUCTION = protocol.REPORT_TO_CXR_INSTRUCTIONS[0]
# Seeds of candidate k of prompt i: seed + i * stride + k, never shared between prompts.
CANDIDATE_STRIDE = 1000


@dataclass(frozen=True)
class Request:
    """One prompt of the stage and its candidates."""

    findings: Findings  # what the template report asks for
    candidates: tuple[tuple[int, ...], ...]  # N drawings, G codes each
    agreement: tuple[int, ...]  # the critic's agreement of each candidate with `findings` (0..11)


def decode(vqgan: VQGAN, codes: Sequence[Sequence[int]], batch: int = 64) -> torch.Tensor:
    """VQ codes [B][G] -> decoded images [B, 1, R, R] in [-1, 1] (channel mean), on the CPU."""
    device = next(vqgan.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(codes), batch):
            chunk = torch.tensor([list(c) for c in codes[i : i + batch]], device=device)
            out.append(vqgan.decode_codes(chunk).float().mean(1, keepdim=True).clamp(-1, 1).cpu())
    return torch.cat(out)


def train_critic(
    samples: Sequence[Sample],
    codes: Sequence[Sequence[int]],
    vqgan: VQGAN,
    steps: int,
    seed: int,
    threads: int,
    log: Callable[[str], None] | None = None,
) -> reader_mod.Reader:
    """A reader CNN trained on `samples` (the stage's training phantoms, model inputs) and, for the first
    CRITIC_RECON_FRACTION of them, their reconstructions from `codes` (the codes the LLM trains on)."""
    config = reader_mod.ReaderConfig(resolution=vqgan.resolution, threads=threads)
    n_rec = int(round(CRITIC_RECON_FRACTION * len(samples)))
    originals = reader_mod.to_input([s.pixels for s in samples], config.resolution)
    x = torch.cat([originals, decode(vqgan, codes[:n_rec])])
    findings = [s.findings for s in samples] + [s.findings for s in samples[:n_rec]]
    t0 = time.time()
    net, losses = reader_mod.fit(x, findings, steps, seed, config, log)
    meta = {
        "role": "critic of a preference stage (train/preference.py); not the evaluation reader",
        "seeds": [min(s.seed for s in samples), max(s.seed for s in samples)],  # first and last phantom
        "n_phantoms": len(samples),
        "n_reconstructions": n_rec,
        "steps": steps,
        "seed": seed,
        "train_s": round(time.time() - t0, 1),
        "loss_last50": float(np.mean(losses[-50:])),
    }
    return reader_mod.Reader(net, config, meta)


def agreement(read: dict, findings: Findings) -> int:
    """How many of the 7 findings (present or not) and 4 attributes ("none" when absent) a reading
    (Reader.predict's dict) has as `findings` state them: 11 is a drawing read exactly as asked."""
    truth = reader_mod.truth_dict(findings)
    return sum(read[key] == value for key, value in truth.items())


def draw_candidates(
    model: torch.nn.Module,
    tokenizer,
    findings: Findings,
    *,
    n: int,
    seed: int,
    guidance: float,
    codebook_size: int,
    grid_tokens: int,
) -> list[tuple[int, ...]]:
    """`n` drawings of `findings`' template report by `model`, sampled as the app samples (upstream's
    temperature and top-p; guided away from the swapped findings, Findings.swapped, at `guidance` when
    there is something to swap: the app's negative before it left a small effusion out); candidate k uses
    seed `seed + k`."""
    layout = protocol.token_layout(tokenizer, codebook_size)
    kw = {"codebook_size": codebook_size, "grid_tokens": grid_tokens}
    prompt = protocol.build_prompt_ids(tokenizer, DRAW_INSTRUCTION, input_text=findings_text(findings), **kw)
    swapped = findings.swapped()
    negative = None
    if guidance != 1.0 and swapped != findings:
        negative = protocol.build_prompt_ids(
            tokenizer, DRAW_INSTRUCTION, input_text=findings_text(swapped), **kw
        )
    out = []
    for k in range(n):
        sampling = SamplingConfig(seed=seed + k, guidance=guidance if negative else 1.0)
        *_, last = generate_image(model, layout, prompt, grid_tokens, sampling, negative_ids=negative)
        out.append(tuple(last.codes))
    return out


def read_requests(
    model: torch.nn.Module,
    tokenizer,
    vqgan: VQGAN,
    critic: reader_mod.Reader,
    chosen: Sequence[Sample],
    *,
    n: int,
    seed: int,
    guidance: float,
    log: Callable[[str], None] | None = None,
) -> list[Request]:
    """Each of `chosen`'s findings drawn `n` times by `model` (draw_candidates) and read by `critic`."""
    model.eval()
    out = []
    t0 = time.time()
    for i, sample in enumerate(chosen):
        candidates = draw_candidates(
            model,
            tokenizer,
            sample.findings,
            n=n,
            seed=seed + i * CANDIDATE_STRIDE,
            guidance=guidance,
            codebook_size=vqgan.n_embed,
            grid_tokens=vqgan.grid_tokens,
        )
        reads = critic.predict(decode(vqgan, candidates))
        scores = tuple(agreement(r, sample.findings) for r in reads)
        out.append(Request(sample.findings, tuple(candidates), scores))
        if log and (i % 25 == 0 or i == len(chosen) - 1):
            log(f"preference: {i + 1}/{len(chosen)} prompts drawn ({time.time() - t0:.0f} s)")
    return out


def preference_pair(request: Request, tokenizer, codebook_size: int, grid_tokens: int) -> Pair | None:
    """The Pair (preferred, other) of one request: its most and least agreeing candidates (the first of
    each on ties); None when every candidate agrees equally. Its cells are the whole grid and its
    reference is 0 until `with_reference` sets it."""
    best = int(np.argmax(request.agreement))
    worst = int(np.argmin(request.agreement))
    if request.agreement[best] == request.agreement[worst]:
        return None
    built = [
        protocol.build_training_ids(
            tokenizer,
            DRAW_INSTRUCTION,
            input_text=findings_text(request.findings),
            response_codes=list(request.candidates[k]),
            codebook_size=codebook_size,
            grid_tokens=grid_tokens,
        )
        for k in (best, worst)
    ]
    (preferred, start), (other, other_start) = built
    return Pair(preferred, other, start, other_start, grid_tokens, tuple(range(grid_tokens)))


@torch.no_grad()
def with_reference(
    model: torch.nn.Module, pairs: Sequence[Pair], pad_id: int, device: torch.device, batch: int = 8
) -> list[Pair]:
    """`pairs` with each `reference` set to `model`'s margin (nats, over the pair's cells): the starting
    model that DPO measures the trained one against."""
    model.eval()
    out = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        logp_a, logp_b = pair_logprobs(model, chunk, pad_id, device)
        for pair, a, b in zip(chunk, logp_a, logp_b, strict=True):
            margin = float((a - b)[list(pair.cells)].sum())
            out.append(replace(pair, reference=margin))
    return out


def summary(requests: Sequence[Request], pairs: Sequence[Pair]) -> dict:
    """What the stage's training record says of its candidates (agreement out of 11)."""
    best = [max(r.agreement) for r in requests]
    worst = [min(r.agreement) for r in requests]
    exact = [sum(a == 11 for a in r.agreement) for r in requests]
    drawn = sum(len(r.candidates) for r in requests)
    return {
        "prompts": len(requests),
        "candidates": drawn,
        "pairs": len(pairs),
        "agreement_mean": float(np.mean([np.mean(r.agreement) for r in requests])),
        "agreement_best_mean": float(np.mean(best)),
        "agreement_worst_mean": float(np.mean(worst)),
        "read_exactly_share": float(np.sum(exact) / max(1, drawn)),
        "reference_margin_mean": float(np.mean([p.reference for p in pairs])) if pairs else None,
    }


def preference_pairs(
    model: torch.nn.Module,
    tokenizer,
    vqgan: VQGAN,
    samples: Sequence[Sample],
    codes: Sequence[Sequence[int]],
    *,
    prompts: int,
    candidates: int,
    critic_steps: int,
    seed: int,
    guidance: float,
    threads: int,
    device: torch.device,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Pair], dict]:
    """(pairs with their reference margins, the record): the whole preparation of a preference stage, by
    `model` before it trains. Prompts are `prompts` of `samples` with a side, size or zone to place."""
    say = log or (lambda _msg: None)
    critic = train_critic(samples, codes, vqgan, critic_steps, seed, threads, say)
    placeable = [s for s in samples if s.findings.swapped() != s.findings]
    rng = np.random.default_rng(seed + 5)
    picked = rng.choice(len(placeable), size=min(prompts, len(placeable)), replace=False)
    chosen = [placeable[i] for i in sorted(picked)]
    requests = read_requests(
        model, tokenizer, vqgan, critic, chosen, n=candidates, seed=seed, guidance=guidance, log=say
    )
    built = (preference_pair(r, tokenizer, vqgan.n_embed, vqgan.grid_tokens) for r in requests)
    pairs = with_reference(model, [p for p in built if p is not None], tokenizer.pad_token_id, device)
    say(f"preference: {len(pairs)} pairs from {len(requests)} prompts")
    return pairs, {"preference": {**summary(requests, pairs), "critic": critic.meta}}
