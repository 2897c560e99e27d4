"""Train the demo adapter model (LLaVA format) on the token demo's phantoms and texts, the two-stage way.

    python -m llmcxr_app.demo.train.adapter --out weights/demo-adapter --base-out weights/demo-base-lm
    python -m llmcxr_app.demo.train.adapter --out /tmp/a --preset tiny   # seconds, for the tests

The shipped recipe takes about 50 minutes on a shared 2-core CPU with one thread (base LM 12.5 min, the rest
38 min; docs/DEMO_ADAPTER.md). --reuse-base skips stage 0 and loads the base LM from --base-out.

0. Base LM: a GPT-NeoX of the token demo's size on the report / instruction text alone (the role dolly or
   Vicuna play), saved to --base-out with its recipe so a token model can start from it too.
1. Vision tower (the MedCLIP role): a small CLIPVisionModel trained contrastively against the frozen base
   LM's mean-pooled report embedding (CLIP loss; phantoms with the same findings count as positives).
2. Stage 1 (alignment): LLaVA's projector alone learns CXR -> report; vision tower and LLM frozen.
3. Stage 2 (instruction tuning): report, VQA and declined plain instructions; projector and LLM trained.
   Whether the vision tower is frozen or lightly tuned is chosen by a short pilot of each, scored on held-out
   validation phantoms (seeds 900000+; the test seeds >= 1,000,000 are never used).
Training uses phantom seeds 0..n_phantoms-1 only. docs/DEMO_ADAPTER.md records the shipped run.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from llmcxr_app.demo.data import samples as data
from llmcxr_app.demo.train import adapter_data as ad
from llmcxr_app.demo.train import adapter_model as am
from llmcxr_app.demo.train import adapter_stages as st
from llmcxr_app.demo.train.adapter_recipe import PRESETS, AdapterRecipe


def _log(msg: str) -> None:
    print(f"[adapter {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _render(recipe: AdapterRecipe, cache: Path | None) -> tuple[list, list]:
    """(training samples, validation samples) at the vision tower's resolution."""
    res = recipe.vision.image_size
    train = data.render_samples(range(recipe.n_phantoms), res, cache=cache and cache / "samples.pkl")
    val_seeds = range(recipe.val_seed_start, recipe.val_seed_start + recipe.n_val)
    val = data.render_samples(val_seeds, res, cache=cache and cache / "val.pkl")
    return train, val


def _save_base(base_lm, tokenizer, recipe: AdapterRecipe, stats: dict, folder: Path) -> None:
    """The shared text-only base LM (Hugging Face GPT-NeoX, fp16) and the recipe that made it."""
    folder.mkdir(parents=True, exist_ok=True)
    base_lm.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("### End")
    base_lm.generation_config.pad_token_id = tokenizer.pad_token_id
    copy.deepcopy(base_lm).to(torch.float16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record = {"recipe": asdict(recipe.base), "llm": asdict(recipe.llm), "seed": recipe.seed, **stats}
    (folder / "base-training.json").write_text(json.dumps(record, indent=2))


def _save_adapter(model, processor, record: dict, out: Path) -> None:
    """weights/demo-adapter: LLaVA config + fp16 safetensors, processor (tokenizer, image processor, chat
    template), generation config stopping at "### End", and the training record."""
    out.mkdir(parents=True, exist_ok=True)
    tok = processor.tokenizer
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("### End")
    model.generation_config.pad_token_id = tok.pad_token_id
    copy.deepcopy(model).to(torch.float16).save_pretrained(out)
    processor.save_pretrained(out)
    processor.image_processor.save_pretrained(out)  # preprocessor_config.json too, for older transformers
    (out / "training.json").write_text(json.dumps(record, indent=2))


def _base_stage(recipe: AdapterRecipe, tokenizer, samples: list, log) -> tuple[torch.nn.Module, dict]:
    """Stage 0: the text-only base LM on the token demo's text corpus (data/samples.corpus)."""
    rng = np.random.default_rng(recipe.seed + 2)
    docs = ad.text_documents(tokenizer, data.corpus(samples, rng), rng)
    base_lm = am.make_base_lm(tokenizer, recipe.llm, recipe.seed)
    stats = st.train_lm(base_lm, docs, tokenizer.pad_token_id, recipe.base, recipe.seed, log, "base")
    return base_lm, {**stats, "n_documents": len(docs)}


def _vision_stage(recipe: AdapterRecipe, base_lm, tokenizer, samples: list, log) -> tuple:
    """Stage 1: the contrastively pretrained vision tower (CLIPVisionModel)."""
    from transformers import CLIPVisionModel

    torch.manual_seed(recipe.seed)
    vision = CLIPVisionModel(am.vision_config(recipe.vision))
    text = st.text_embeddings(base_lm, tokenizer, [s.report for s in samples])
    groups = st.finding_groups(samples)
    stats = st.train_clip(vision, text, groups, samples, recipe.clip, recipe.vision, recipe.seed, log)
    return vision, stats


def _stage2(recipe: AdapterRecipe, model, tokenizer, samples, val, log) -> tuple:
    """Pilot both vision-tower options on validation phantoms, then the full stage 2 with the better one."""
    rng = np.random.default_rng(recipe.seed + 5)
    n_img = am.n_image_tokens(recipe.vision)
    examples = ad.instruction_examples(
        tokenizer, samples, rng, n_img, recipe.qa_per_image, recipe.plain_fraction
    )
    pilot = {}
    for name, scale in (("frozen", 0.0), ("tuned", recipe.vision_lr_scale)):
        trial = copy.deepcopy(model)
        short = replace(recipe.stage2, steps=recipe.pilot_steps, warmup=min(recipe.stage2.warmup, 10))
        st.train_llava(trial, examples, samples, tokenizer, short, scale, recipe.seed, log, f"pilot-{name}")
        pilot[name] = st.validate(trial, tokenizer, val, n_img, recipe.seed)
        log(f"pilot {name}: {pilot[name]}")
    choice = max(pilot, key=lambda k: pilot[k]["score"])
    scale = recipe.vision_lr_scale if choice == "tuned" else 0.0
    stats = st.train_llava(
        model, examples, samples, tokenizer, recipe.stage2, scale, recipe.seed, log, "stage2"
    )
    final = st.validate(model, tokenizer, val, n_img, recipe.seed)
    log(f"stage 2 ({choice} vision tower) validation: {final}")
    return {**stats, "pilot": pilot, "vision_tower": choice, "validation": final, "n_examples": len(examples)}


def _reuse_base(folder: Path) -> tuple[torch.nn.Module, dict]:
    """The base LM an earlier run of this recipe saved in `folder`, and its recorded stats."""
    from transformers import AutoModelForCausalLM

    stats = json.loads((folder / "base-training.json").read_text())
    stats = {k: v for k, v in stats.items() if k not in ("recipe", "llm", "seed")}
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), {**stats, "reused": True}


def _stage1(recipe: AdapterRecipe, model, tokenizer, samples: list, log) -> dict:
    """Stage 1 (alignment): the projector alone learns CXR -> report."""
    rng = np.random.default_rng(recipe.seed + 4)
    examples = ad.report_examples(tokenizer, samples, rng, am.n_image_tokens(recipe.vision))
    return st.train_llava(
        model, examples, samples, tokenizer, recipe.stage1, None, recipe.seed, log, "stage1"
    )


def run(
    recipe: AdapterRecipe,
    out: Path,
    base_out: Path | None,
    cache: Path | None,
    log=_log,
    reuse_base: bool = False,
) -> dict:
    """Every stage; writes the LLaVA directory to `out` (and the base LM to `base_out`); returns the record.
    `reuse_base`: take the base LM from `base_out` (saved by an earlier run of the same recipe)."""
    torch.set_num_threads(recipe.threads)
    t0, timings = time.time(), {}
    samples, val = _render(recipe, cache)
    timings["phantoms_s"] = time.time() - t0
    tokenizer = am.base_tokenizer()
    t = time.time()
    if reuse_base and base_out is not None:
        base_lm, base_stats = _reuse_base(base_out)
    else:
        base_lm, base_stats = _base_stage(recipe, tokenizer, samples, log)
        base_stats["base_s"] = time.time() - t
    timings["base_s"] = time.time() - t
    if base_out is not None and not base_stats.get("reused"):
        _save_base(base_lm, tokenizer, recipe, base_stats, base_out)
    t = time.time()
    vision, clip_stats = _vision_stage(recipe, base_lm, tokenizer, samples, log)
    timings["clip_s"] = time.time() - t
    adapter_tok = am.adapter_tokenizer(tokenizer)
    model = am.assemble(vision, base_lm, adapter_tok, recipe.vision)
    t = time.time()
    stage1 = _stage1(recipe, model, adapter_tok, samples, log)
    timings["stage1_s"] = time.time() - t
    t = time.time()
    stage2 = _stage2(recipe, model, adapter_tok, samples, val, log)
    timings["stage2_s"] = time.time() - t
    timings["total_s"] = time.time() - t0
    record = {
        "recipe": asdict(recipe),
        "torch": torch.__version__,
        "threads": recipe.threads,
        "timings": timings,
        "base": base_stats,
        "clip": clip_stats,
        "stage1": stage1,
        "stage2": stage2,
        "parameters": sum(p.numel() for p in model.parameters()),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _save_adapter(model, am.make_processor(adapter_tok, recipe.vision), record, out)
    log(f"done in {timings['total_s'] / 60:.1f} min -> {out}")
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="LLaVA directory (weights/demo-adapter shipped)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo-adapter")
    p.add_argument("--base-out", type=Path, default=None, help="also save the shared base LM here")
    p.add_argument("--cache", type=Path, default=None, help="folder for rendered phantoms between runs")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the preset's)")
    p.add_argument("--reuse-base", action="store_true", help="load the base LM from --base-out, skip stage 0")
    a = p.parse_args(argv)
    recipe = PRESETS[a.preset]
    if a.threads is not None:
        recipe = replace(recipe, threads=a.threads)
    if a.reuse_base and a.base_out is None:
        p.error("--reuse-base needs --base-out (the folder of the saved base LM).")
    run(recipe, a.out, a.base_out, a.cache, reuse_base=a.reuse_base)


if __name__ == "__main__":
    main()
