"""Command line of the demo trainer: `python -m llmcxr_app.demo.train` (see training.py's docstring).

`--recipe NAME` runs a recipe file (train/recipe.py: fixed steps and seeds, every stage); the other flags
run one stage of training.run by hand, as the earlier rounds were made.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from llmcxr_app.demo.train import recipe as recipe_mod
from llmcxr_app.demo.train import training
from llmcxr_app.demo.train.config import PRESETS
from llmcxr_app.demo.train.training import run
from llmcxr_app.loading.writers import shrink

# flag -> TrainConfig field, for the single-stage overrides
_OVERRIDES = {
    "seed": (int, "override the preset's seed"),
    "lm_steps": (int, "override the preset's LLM steps"),
    "vq_steps": (int, "override the preset's VQ-GAN steps"),
    "threads": (int, "torch CPU threads (1 is faster on a busy machine)"),
    "vq_lr": (float, "override the preset's VQ-GAN learning rate"),
    "lm_lr": (float, "override the preset's peak LLM learning rate"),
    "draw_keep": (float, "fraction of report->CXR examples kept"),
    "lm_warmup": (int, "override the preset's LLM warm-up steps"),
    "n_phantoms": (int, "override the preset's training phantoms"),
    "qa_per_image": (int, "override the preset's VQA examples per phantom"),
    "rich_fraction": (float, "share of clinician-style drawing texts and VQA questions (data/language.py)"),
    "init_llm": (str, "start the LLM from this text-only base LM (weights/demo-base-lm)"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=training.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder (weights/demo for the shipped model)"
    )
    p.add_argument(
        "--recipe", default=None, help=f"run a recipe: one of {recipe_mod.available()} or a JSON path"
    )
    p.add_argument("--start-from", type=Path, default=None, help="recipe: copy this folder as the start")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    for name, (kind, text) in _OVERRIDES.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)
    p.add_argument("--lm-budget-min", type=float, default=None, help="cap the LLM stage to this many minutes")
    p.add_argument(
        "--loss-weighting", choices=("token", "example"), default=None, help="override the preset's"
    )
    p.add_argument("--hold-out", action="store_true", help="drop the held-out finding combinations")
    p.add_argument("--shrink-only", action="store_true", help="only convert OUT's weights to fp16 and exit")
    p.add_argument("--continue-vqgan", action="store_true", help="train OUT/vqgan further, then the LLM")
    p.add_argument(
        "--continue-llm", action="store_true", help="train OUT/llm further (implies --reuse-vqgan)"
    )
    p.add_argument("--reuse-vqgan", action="store_true", help="keep OUT/vqgan and train only the LLM")
    return p


def main(argv: list[str] | None = None) -> None:
    a = _parser().parse_args(argv)
    if a.shrink_only:
        shrink(a.out)
        return
    if a.recipe is not None:
        recipe_mod.run_recipe(recipe_mod.load(a.recipe), a.out, a.device, start_from=a.start_from)
        return
    overrides = {name: getattr(a, name) for name in _OVERRIDES}
    overrides["loss_weighting"] = a.loss_weighting
    if a.lm_budget_min is not None:
        overrides["lm_budget_s"] = a.lm_budget_min * 60
    if a.hold_out:
        overrides["hold_out"] = True
    overrides = {k: v for k, v in overrides.items() if v is not None}
    run(
        replace(PRESETS[a.preset], **overrides),
        a.out,
        a.device,
        reuse_vqgan=a.reuse_vqgan or a.continue_llm,
        continue_vqgan=a.continue_vqgan,
        continue_llm=a.continue_llm,
    )
