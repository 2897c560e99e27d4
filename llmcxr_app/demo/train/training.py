"""Train the embedded demo LLM-CXR on synthetic phantoms, with the paper's recipe at a small scale.

    python -m llmcxr_app.demo.train --out weights/demo            # one round of the default recipe
    python -m llmcxr_app.demo.train --out OUT --continue-llm ...  # a further LLM round from OUT
    python -m llmcxr_app.demo.train --out /tmp/smoke --preset tiny   # a few steps, for CI
    python -m llmcxr_app.demo.train --out OUT --reuse-vqgan --init-llm weights/demo-base-lm ...  # from the base
    python -m llmcxr_app.demo.train --recipe demo --out OUT        # the shipped weights (train/recipe.py)

One round of the default recipe (500 VQ-GAN steps, 1300 LLM steps at about 2 s each) takes on the order of
an hour on a 2-core CPU, and one round does not make a useful model (after the first, the model wrote the
normal report for every X-ray). The shipped weights took ten rounds (13143 LLM steps, about 6.8 h of CPU
wall time); docs/DEMO_MODEL.md lists each round's command and time.

Stages: (1) a VQ-GAN (modeling/vqgan.py's network) learns 16 x 16 codes of 128 px phantoms; (2) a byte-level BPE
tokenizer is trained on the texts and given LLM-CXR's special tokens; (3) a GPT-NeoX is instruction-tuned on
report->CXR, CXR->report, VQA and plain instructions with completion-only loss. Outputs use the official
layout: `vqgan/` (taming YAML + safetensors) and `llm/` (Hugging Face directory).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from llmcxr_app import protocol
from llmcxr_app.demo.data import samples as data
from llmcxr_app.demo.data.pairs import Pair, contrast_cells, contrast_pairs
from llmcxr_app.demo.train import preference
from llmcxr_app.demo.train.config import TrainConfig
from llmcxr_app.demo.train.losses import completion_loss, pair_contrast
from llmcxr_app.demo.train.outputs import save_llm, write_record
from llmcxr_app.loading.weights import DRAW_GUIDANCE_KEY, DRAW_PROMPT_KEY, QUESTION_PROMPT_KEY, load_vqgan
from llmcxr_app.loading.writers import save_vqgan
from llmcxr_app.modeling.builders import make_llm, train_tokenizer
from llmcxr_app.modeling.vqgan import VQGAN


def _log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_vqgan(
    cfg: TrainConfig, samples: list[data.Sample], device: torch.device, init: VQGAN | None = None
) -> tuple[VQGAN, dict]:
    """L1 + MSE reconstruction with codebook/commitment losses; k-means-style init and dead-code restarts.

    No adversarial or perceptual loss: phantoms are smooth, and LPIPS weights cannot be downloaded here.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = (init if init is not None else VQGAN(cfg.vqgan)).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.vq_lr, betas=(0.5, 0.9))
    usage = torch.zeros(cfg.vqgan.n_embed, device=device)
    history = []
    for step in range(cfg.vq_steps):
        c, r, f = cfg.vq_crop, cfg.vqgan.resolution, cfg.vqgan.downsample_factor
        batch = []
        for i in rng.integers(0, len(samples), cfg.vq_batch):
            # Crops aligned to the latent cells, so codes see the same phase as at inference.
            y, x0 = (rng.integers(0, (r - c) // f + 1, 2) * f).tolist()
            batch.append(samples[i].pixels[y : y + c, x0 : x0 + c])
        x = data.to_tensor(batch).to(device)
        with torch.no_grad():
            if init is None and step in (10, 40):  # codebook from encoder outputs once they carry structure
                z = model.latents(x).permute(0, 2, 3, 1).reshape(-1, cfg.vqgan.embed_dim)
                pick = torch.randint(
                    0, z.shape[0], (cfg.vqgan.n_embed,), generator=torch.Generator().manual_seed(step)
                )
                model.quantize.embedding.weight.copy_(
                    z[pick.to(z.device)] + 1e-3 * torch.randn_like(z[pick.to(z.device)])
                )
        rec, q_loss, codes = model(x)
        rec_loss = (rec - x).abs().mean() + F.mse_loss(rec, x)
        loss = rec_loss + q_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            usage.mul_(0.95).index_add_(0, codes.flatten(), torch.ones(codes.numel(), device=device))
            if step > 40 and step % 25 == 0:  # restart dead codes on random current latents
                dead = (usage < 0.05).nonzero().flatten()
                if len(dead):
                    z = model.latents(x).permute(0, 2, 3, 1).reshape(-1, cfg.vqgan.embed_dim)
                    pick = torch.randint(0, z.shape[0], (len(dead),), device=device)
                    model.quantize.embedding.weight[dead] = z[pick]
        history.append(float(rec_loss.detach()))
        if step % 25 == 0 or step == cfg.vq_steps - 1:
            _log(
                f"vqgan step {step}/{cfg.vq_steps} rec {np.mean(history[-25:]):.4f} codes used {(usage > 0.05).sum()}"
            )
    model.eval()
    return model, {"vq_rec_loss_last50": float(np.mean(history[-50:]))}


@torch.no_grad()
def encode_all(
    model: VQGAN, samples: list[data.Sample], device: torch.device, batch: int = 64
) -> list[list[int]]:
    out: list[list[int]] = []
    for i in range(0, len(samples), batch):
        x = data.to_tensor([s.pixels for s in samples[i : i + batch]]).to(device)
        out += model.encode_codes(x).tolist()
    return out


def _lm_loss(cfg: TrainConfig, model, batch: list, pad_id: int, image_ids: dict, rng, device) -> torch.Tensor:
    """The completion loss of one batch of examples (with the round's context noise and finding weights)."""
    ids, mask, labels = data.collate(batch, pad_id)
    if cfg.context_noise > 0:
        ids = data.corrupt_image_context(ids, batch, fraction=cfg.context_noise, rng=rng, **image_ids)
    weights = None
    if cfg.finding_weight != 1.0:
        weights = data.focus_weights(batch, ids.shape[1], cfg.finding_weight).to(device)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    return completion_loss(logits, labels.to(device), cfg.loss_weighting, weights)


def train_llm(
    cfg: TrainConfig,
    tokenizer,
    examples: list[data.Example],
    codebook_size: int,
    device: torch.device,
    init: torch.nn.Module | None = None,
    *,
    grid_tokens: int,
    pairs: list[Pair] | None = None,
) -> tuple[torch.nn.Module, dict]:
    """AdamW with linear warm-up and cosine decay on the completion loss, plus cfg.side_contrast times the
    contrast of `pairs` (needed when side_contrast > 0)."""
    if cfg.side_contrast > 0 and len(pairs or ()) < cfg.contrast_pairs:
        raise ValueError(f"side_contrast needs at least {cfg.contrast_pairs} contrast pairs.")
    model = init if init is not None else make_llm(len(tokenizer), codebook_size, cfg.llm, seed=cfg.seed)
    model = model.to(device=device, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lm_lr, betas=(0.9, 0.95), weight_decay=0.01)
    rng = np.random.default_rng(cfg.seed + 1)
    batches: list[list[int]] = []
    history, margins = [], []
    image_ids = {"first_image_id": len(tokenizer), "codebook_size": codebook_size, "grid_tokens": grid_tokens}
    model.train()
    total = cfg.lm_steps
    t_start = time.time()
    step = 0
    while step < total:
        if step == 10 and cfg.lm_budget_s > 0:
            per_step = (time.time() - t_start) / 10
            total = max(11, min(cfg.lm_steps, int(cfg.lm_budget_s / per_step)))
            _log(f"llm: {per_step:.2f} s/step -> {total} steps to fit {cfg.lm_budget_s / 60:.0f} min")
        if not batches:
            batches = data.length_batches(examples, cfg.lm_batch, rng)
        batch = [examples[i] for i in batches.pop()]
        warm = min(1.0, (step + 1) / cfg.lm_warmup)
        cos = 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
        for g in opt.param_groups:
            g["lr"] = cfg.lm_lr * warm * (0.05 + 0.95 * cos)
        loss = _lm_loss(cfg, model, batch, tokenizer.pad_token_id, image_ids, rng, device)
        history.append(float(loss.detach()))
        if cfg.side_contrast > 0:
            picked = [pairs[i] for i in rng.choice(len(pairs), size=cfg.contrast_pairs, replace=False)]
            contrast, margin = pair_contrast(model, picked, cfg.contrast_beta, tokenizer.pad_token_id, device)
            loss = loss + cfg.side_contrast * contrast
            margins.append(margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == total - 1:
            said = f" contrast margin {np.mean(margins[-25:]):.2f} nats" if margins else ""
            _log(f"llm step {step}/{total} loss {np.mean(history[-25:]):.4f}{said}")
        step += 1
    model.eval()
    stats = {"lm_loss_last50": float(np.mean(history[-50:])), "lm_steps_run": total}
    if margins:
        stats["contrast_margin_last50"] = float(np.mean(margins[-50:]))
    return model, stats


def _vqgan_stage(
    cfg: TrainConfig, samples: list, out: Path, dev: torch.device, reuse: bool, more: bool
) -> tuple[VQGAN, dict]:
    """Train the VQ-GAN (or reuse OUT/vqgan, or give it a further round); writes it to OUT/vqgan."""
    folder = out / "vqgan"
    if reuse or more:  # resume after the VQ-GAN stage
        vqgan = load_vqgan(folder / "demo-vqgan.yaml", folder / "demo-vqgan.safetensors", device=dev)
        vq_stats = json.loads((folder / "vqgan-training.json").read_text())
        if not more:
            return vqgan, vq_stats
        vqgan, stats = train_vqgan(cfg, samples, dev, init=vqgan)  # a second round, recorded
        rounds = [*vq_stats.get("rounds", [vq_stats]), {**stats, "steps": cfg.vq_steps, "lr": cfg.vq_lr}]
        vq_stats = {**stats, "rounds": rounds}
    else:
        vqgan, vq_stats = train_vqgan(cfg, samples, dev)
    save_vqgan(vqgan, folder)
    (folder / "vqgan-training.json").write_text(json.dumps(vq_stats))
    return vqgan, vq_stats


def _llm_inputs(cfg: TrainConfig, out: Path, samples: list, continue_llm: bool) -> tuple[Any, Any, Any]:
    """(tokenizer, initial LLM or None, rng for the examples): a new tokenizer, or OUT/llm's for a further round."""
    if continue_llm:  # a further LLM round from OUT/llm (same tokenizer), recorded in training.json
        from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: only for this path

        rng = np.random.default_rng(cfg.seed + 3)
        tokenizer = AutoTokenizer.from_pretrained(out / "llm")
        return tokenizer, AutoModelForCausalLM.from_pretrained(out / "llm", dtype=torch.float32), rng
    rng = np.random.default_rng(cfg.seed + 2)
    if cfg.init_llm:  # the base's tokenizer and weights, grown by the image rows (init_from_base.py)
        from llmcxr_app.demo.train.init_from_base import init_from_base

        return (*init_from_base(cfg.init_llm, cfg.vqgan.n_embed, cfg.llm, cfg.seed), rng)
    return train_tokenizer(data.corpus(samples, rng), vocab_size=cfg.vocab_size), None, rng


def _examples(
    cfg: TrainConfig,
    tokenizer: Any,
    samples: list,
    codes: Any,
    grid_tokens: int,
    rng: Any,
    focus: Any = None,
) -> list:
    """The instruction examples of one LLM round, checked to fit the context."""
    examples = data.build_examples(
        tokenizer,
        samples,
        codes,
        codebook_size=cfg.vqgan.n_embed,
        grid_tokens=grid_tokens,
        rng=rng,
        qa_per_image=cfg.qa_per_image,
        rich_fraction=cfg.rich_fraction,
        focus=focus,
    )
    if cfg.draw_keep < 1.0:  # rebalance towards reading images (draw examples dominate the loss)
        examples = [e for e in examples if e.task != protocol.TASK_DRAW or rng.random() < cfg.draw_keep]
    too_long = [e for e in examples if len(e.ids) > cfg.llm.max_positions]
    if too_long and cfg.rich_fraction > 0:  # a few clinician-style reports run past the context: left out
        _log(f"{len(too_long)} examples longer than {cfg.llm.max_positions} ids left out")
        examples, too_long = [e for e in examples if len(e.ids) <= cfg.llm.max_positions], []
    if too_long:
        raise ValueError(f"{len(too_long)} examples exceed the context of {cfg.llm.max_positions} ids.")
    longest = max(len(e.ids) for e in examples)
    _log(f"tokenizer {len(tokenizer)} ids; {len(examples)} examples, longest {longest} ids")
    return examples


def focus_of(cfg: TrainConfig, samples: list, grid: int) -> list | None:
    """Per sample, the grid cells that cfg.finding_weight weighs (cfg.focus_cells); None at weight 1."""
    if cfg.finding_weight == 1.0:
        return None
    contrast = partial(contrast_cells, against=cfg.contrast_against)
    cells = {"findings": data.finding_cells, "contrast": contrast}.get(cfg.focus_cells)
    if cells is None:
        raise ValueError(f"Unknown focus_cells {cfg.focus_cells!r}; use 'findings' or 'contrast'.")
    return [list(cells(s, grid)) for s in samples]


def _pairs(cfg: TrainConfig, tokenizer, init, vqgan, samples, codes, focus, rng, dev) -> tuple[Any, dict]:
    """The round's pairs (None without side_contrast) and what the record says of them."""
    if cfg.side_contrast <= 0:
        return None, {}
    if cfg.preference_prompts > 0:
        if init is None:
            raise ValueError("A preference round draws with the model it continues: use continue_llm.")
        return preference.preference_pairs(
            init.to(dev),
            tokenizer,
            vqgan,
            samples,
            codes,
            prompts=cfg.preference_prompts,
            candidates=cfg.preference_candidates,
            critic_steps=cfg.critic_steps,
            seed=cfg.seed,
            guidance=cfg.draw_guidance,
            threads=cfg.threads,
            device=dev,
            log=_log,
        )
    known = focus if focus is not None and cfg.focus_cells == "contrast" else None  # rendered once
    kw = {"codebook_size": cfg.vqgan.n_embed, "grid": vqgan.grid, "rng": rng}
    pairs = contrast_pairs(tokenizer, samples, codes, cells=known, against=cfg.contrast_against, **kw)
    _log(f"{len(pairs)} contrast pairs")
    return pairs, {}


def declared(cfg: TrainConfig) -> dict[str, Any]:
    """What the checkpoint tells the app in config.json (loading.weights reads it); guidance 1 is no key."""
    guidance = None if cfg.draw_guidance == 1.0 else cfg.draw_guidance
    return {
        DRAW_PROMPT_KEY: cfg.draw_prompt,
        QUESTION_PROMPT_KEY: cfg.question_prompt,
        DRAW_GUIDANCE_KEY: guidance,
    }


def run(
    cfg: TrainConfig,
    out: Path,
    device: str = "cpu",
    reuse_vqgan: bool = False,
    continue_vqgan: bool = False,
    continue_llm: bool = False,
) -> dict:
    """Train all stages and write the model to `out`; returns the training record (also saved as JSON)."""
    torch.set_num_threads(cfg.threads)
    dev = torch.device(device)
    t0 = time.time()
    timings = {}
    samples = data.render_samples(
        range(cfg.n_phantoms), cfg.vqgan.resolution, cache=out / "cache" / "samples.pkl"
    )
    samples = data.round_samples(samples, cfg.vqgan.resolution, cfg.mirror_twins, cfg.hold_out)
    timings["phantoms_s"] = time.time() - t0
    _log(f"{len(samples)} phantoms in {timings['phantoms_s']:.0f} s")
    t = time.time()
    vqgan, vq_stats = _vqgan_stage(cfg, samples, out, dev, reuse_vqgan, continue_vqgan)
    codes = encode_all(vqgan, samples, dev)
    focus = focus_of(cfg, samples, vqgan.grid)
    timings["vqgan_s"] = time.time() - t
    t = time.time()
    tokenizer, init, rng = _llm_inputs(cfg, out, samples, continue_llm)
    examples = _examples(cfg, tokenizer, samples, codes, vqgan.grid_tokens, rng, focus)
    pairs, pair_stats = _pairs(cfg, tokenizer, init, vqgan, samples, codes, focus, rng, dev)
    llm, lm_stats = train_llm(
        cfg, tokenizer, examples, cfg.vqgan.n_embed, dev, init, grid_tokens=vqgan.grid_tokens, pairs=pairs
    )
    timings["llm_s"] = time.time() - t
    save_llm(llm, tokenizer, out, cfg.vqgan.n_embed, declared(cfg))
    timings["total_s"] = time.time() - t0
    record = {
        "config": asdict(cfg),
        "device": str(dev),
        "torch": torch.__version__,
        "timings": timings,
        **vq_stats,
        **lm_stats,
        **pair_stats,
        "n_examples": len(examples),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_record(out, record, continue_llm)
    _log(f"done in {timings['total_s'] / 60:.1f} min -> {out}")
    return record
