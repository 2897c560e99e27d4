"""The command line of the token demo trainer: `python -m llmcxr_app.demo.train` (see training.py)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from llmcxr_app.demo.train.training import PRESETS, run
from llmcxr_app.demo.train.training import __doc__ as TRAINING_DOC
from llmcxr_app.loading.writers import shrink


def _parser() -> argparse.ArgumentParser:
    """Every flag; a flag left unset keeps the preset's value."""
    p = argparse.ArgumentParser(
        description=TRAINING_DOC, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder (weights/demo for the shipped model)"
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    p.add_argument("--lm-steps", type=int, default=None, help="override the preset's LLM steps")
    p.add_argument("--vq-steps", type=int, default=None, help="override the preset's VQ-GAN steps")
    p.add_argument("--lm-budget-min", type=float, default=None, help="cap the LLM stage to this many minutes")
    p.add_argument("--shrink-only", action="store_true", help="only convert OUT's weights to fp16 and exit")
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 is faster on a busy machine)"
    )
    p.add_argument("--continue-vqgan", action="store_true", help="train OUT/vqgan further, then the LLM")
    p.add_argument("--vq-lr", type=float, default=None, help="override the preset's VQ-GAN learning rate")
    p.add_argument(
        "--continue-llm", action="store_true", help="train OUT/llm further (implies --reuse-vqgan)"
    )
    p.add_argument("--lm-lr", type=float, default=None, help="override the preset's peak LLM learning rate")
    p.add_argument("--draw-keep", type=float, default=None, help="fraction of report->CXR examples kept")
    p.add_argument(
        "--loss-weighting", choices=("token", "example"), default=None, help="override the preset's"
    )
    p.add_argument("--lm-warmup", type=int, default=None, help="override the preset's LLM warm-up steps")
    p.add_argument("--reuse-vqgan", action="store_true", help="keep OUT/vqgan and train only the LLM")
    p.add_argument("--n-phantoms", type=int, default=None, help="override the preset's training phantoms")
    p.add_argument(
        "--qa-per-image", type=int, default=None, help="override the preset's VQA examples per phantom"
    )
    p.add_argument(
        "--init-llm", default=None, help="start the LLM from this text-only base LM (weights/demo-base-lm)"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, apply them over the preset and train (or only shrink OUT's weights)."""
    a = _parser().parse_args(argv)
    if a.shrink_only:
        shrink(a.out)
        return
    cfg = PRESETS[a.preset]
    overrides = {
        "seed": a.seed,
        "lm_steps": a.lm_steps,
        "vq_steps": a.vq_steps,
        "threads": a.threads,
        "vq_lr": a.vq_lr,
        "lm_lr": a.lm_lr,
        "draw_keep": a.draw_keep,
        "loss_weighting": a.loss_weighting,
        "lm_warmup": a.lm_warmup,
        "n_phantoms": a.n_phantoms,
        "qa_per_image": a.qa_per_image,
        "init_llm": a.init_llm,
    }
    if a.lm_budget_min is not None:
        overrides["lm_budget_s"] = a.lm_budget_min * 60
    overrides = {k: v for k, v in overrides.items() if v is not None}
    run(
        replace(cfg, **overrides),
        a.out,
        a.device,
        reuse_vqgan=a.reuse_vqgan or a.continue_llm,
        continue_vqgan=a.continue_vqgan,
        continue_llm=a.continue_llm,
    )
