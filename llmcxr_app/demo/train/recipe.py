"""Recipes: every stage that makes a demo model, with fixed step counts and seeds, in one JSON file.

    python -m llmcxr_app.demo.train --recipe demo --out OUT

A recipe names its starting point (nothing: train from scratch; or a weights folder at a git commit of
this repository) and its stages, each a TrainConfig preset plus overrides run by training.run: from scratch
(VQ-GAN, tokenizer and LLM), "new_llm" (a new tokenizer and LLM on the VQ-GAN already in OUT, so two LLM
designs can be compared on the same image tokens), or as a further LLM round (--continue-llm). The stages
that build an LLM take "llm" keys, which override the preset's LLMShape (depth, rotary base). Two
stages change the LLM without training it: "deepen_llm" grows it to more layers without changing its outputs
(deepen.py), and "grid_rope" retunes its rotary base so one rotary pair turns once per image-grid row
(grid_rope.py); the rounds after them train the result. A further LLM round with "preference_prompts"
learns from the model's own drawings (preference.py). Wall-clock budgets (lm_budget_s) are refused: a
step count fixed in the file is what makes a second run repeat the first.
Files: train/recipes/NAME.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from llmcxr_app.demo.train.config import PRESETS, TrainConfig
from llmcxr_app.demo.train.deepen import deepen
from llmcxr_app.demo.train.grid_rope import set_grid_rope
from llmcxr_app.demo.train.outputs import write_record
from llmcxr_app.demo.train.training import run
from llmcxr_app.loading.writers import shrink
from llmcxr_app.modeling.builders import LLMShape

RECIPES = Path(__file__).parent / "recipes"
REPO = Path(__file__).resolve().parents[3]
MODES = ("scratch", "new_llm", "continue_llm", "deepen_llm", "grid_rope")
BUILDS_LLM = ("scratch", "new_llm")  # the stages that build an LLM (so take "llm" shape keys)


@dataclass(frozen=True)
class Start:
    """Weights a recipe continues from: `path` (repository-relative) as committed in `git_commit`."""

    git_commit: str  # 40 hex digits of a commit of this repository
    path: str  # the weights folder inside that commit, e.g. "weights/demo"
    what: str = ""  # how those weights were made (for the record)


@dataclass(frozen=True)
class Stage:
    """One step of a recipe: a training.run call, or growing the LLM."""

    name: str  # a label for the log and the record
    mode: str  # "scratch" (all stages of training.run) | "new_llm" (a new tokenizer and LLM on the VQ-GAN
    #            already in OUT) | "continue_llm" (a further LLM round) |
    #            "deepen_llm" (grow OUT/llm to `layers` blocks, same outputs; no training) |
    #            "grid_rope" (set OUT/llm's rotary base for a `grid_width`-wide grid; no training)
    config: TrainConfig  # the preset with this stage's overrides (unused by deepen_llm and grid_rope)
    layers: int = 0  # deepen_llm: the LLM's new number of layers
    grid_width: int = 0  # grid_rope: image ids per grid row (16 for the official 16 x 16 grid)


@dataclass(frozen=True)
class Recipe:
    """A whole recipe: its start and its stages, run in order into one output folder."""

    name: str  # the file's stem
    start: Start | None  # None: the first stage trains from scratch
    stages: tuple[Stage, ...]  # run in order; none: the start is the model


def available() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.json"))


def _stage(raw: dict) -> Stage:
    """A Stage from its JSON; unknown config keys and wall-clock budgets are refused."""
    known = {f.name for f in fields(TrainConfig)} - {"vqgan", "llm"}
    overrides = dict(raw.get("config", {}))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"stage {raw.get('name')!r}: unknown config keys {unknown}; known: {sorted(known)}")
    if overrides.get("lm_budget_s", 0) > 0:
        raise ValueError(
            f"stage {raw.get('name')!r}: a recipe fixes lm_steps; wall-clock budgets are refused"
        )
    if raw.get("mode") not in MODES:
        raise ValueError(f"stage {raw.get('name')!r}: mode must be one of {MODES}")
    layers = int(raw.get("layers", 0))
    if raw["mode"] == "deepen_llm" and layers < 1:
        raise ValueError(f'stage {raw.get("name")!r}: deepen_llm needs "layers", the new depth')
    grid_width = int(raw.get("grid_width", 0))
    if raw["mode"] == "grid_rope" and grid_width < 1:
        raise ValueError(f'stage {raw.get("name")!r}: grid_rope needs "grid_width", ids per grid row')
    preset = raw.get("preset", "demo")
    if preset not in PRESETS:
        raise ValueError(
            f"stage {raw.get('name')!r}: unknown preset {preset!r}; use one of {sorted(PRESETS)}"
        )
    config = replace(PRESETS[preset], **overrides)
    llm = dict(raw.get("llm", {}))  # LLMShape overrides, for the stages that build the LLM
    unknown = sorted(set(llm) - {f.name for f in fields(LLMShape)})
    if unknown:
        raise ValueError(f"stage {raw.get('name')!r}: unknown llm keys {unknown}")
    if llm and raw["mode"] not in BUILDS_LLM:
        raise ValueError(
            f"stage {raw.get('name')!r}: only a scratch or new_llm stage builds an LLM from llm keys"
        )
    config = replace(config, llm=replace(config.llm, **llm))
    return Stage(str(raw["name"]), raw["mode"], config, layers, grid_width)


def load(name_or_path: str) -> Recipe:
    """A recipe by name (train/recipes/NAME.json) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no recipe {name_or_path!r}; available: {available()}")
    raw = json.loads(path.read_text())
    start = Start(**raw["start"]) if raw.get("start") else None
    stages = tuple(_stage(s) for s in raw["stages"])
    if start is None and not stages:
        raise ValueError(f"recipe {path} has neither a start nor stages")
    if start is None and stages[0].mode != "scratch":
        raise ValueError(f"recipe {path}: without a start, the first stage must train from scratch")
    return Recipe(path.stem, start, stages)


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True).stdout


def materialize_start(start: Start, out: Path) -> list[str]:
    """Write the files of start.path at start.git_commit into `out` (same layout); returns their names."""
    try:
        names = _git("ls-tree", "-r", "--name-only", start.git_commit, "--", start.path).decode().split()
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        raise RuntimeError(
            f"cannot read {start.path} at commit {start.git_commit} from git in {REPO}"
        ) from exc
    if not names:
        raise RuntimeError(f"{start.path} holds no files at commit {start.git_commit}")
    for name in names:
        target = out / Path(name).relative_to(start.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_git("show", f"{start.git_commit}:{name}"))
    return names


def run_recipe(recipe: Recipe, out: Path, device: str = "cpu", start_from: Path | None = None) -> list[dict]:
    """Materialize the start (or copy `start_from`, e.g. a local copy of it), then run every stage."""
    out.mkdir(parents=True, exist_ok=True)
    if start_from is not None:
        shutil.copytree(start_from, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("cache"))
    elif recipe.start is not None:
        materialize_start(recipe.start, out)
    records = []
    for stage in recipe.stages:
        print(f"[recipe {recipe.name}] stage {stage.name!r} ({stage.mode})", flush=True)
        if stage.mode == "deepen_llm":
            records.append(deepen_folder(out, stage.layers))
            continue
        if stage.mode == "grid_rope":
            records.append(grid_rope_folder(out, stage.grid_width))
            continue
        cont = stage.mode == "continue_llm"
        reuse = cont or stage.mode == "new_llm"
        records.append(run(stage.config, out, device, reuse_vqgan=reuse, continue_llm=cont))
    return records


def deepen_folder(out: Path, layers: int) -> dict:
    """Grow the GPT-NeoX in OUT/llm to `layers` blocks in place (fp16, like every saved stage); the step is
    recorded in OUT/training.json as a round of its own, so the rounds after it list it in order."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "llm", dtype=torch.float32)
    before = model.config.num_hidden_layers
    deepen(model, layers).save_pretrained(out / "llm")
    shrink(out)
    record = {"deepened": {"from_layers": before, "to_layers": layers}}
    write_record(out, dict(record), continue_llm=True)
    return record


def grid_rope_folder(out: Path, grid_width: int) -> dict:
    """Retune OUT/llm's rotary base for a `grid_width`-wide image grid (config only, weights unchanged);
    recorded in OUT/training.json as a round of its own, like deepen_folder."""
    record = {"grid_rope": set_grid_rope(out / "llm", grid_width)}
    write_record(out, dict(record), continue_llm=True)
    return record
