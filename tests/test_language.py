"""demo/data/language.py, questions.py, splits.py and train/recipe.py: the clinician-style training text,
its splits, and the recipe that trains on it. The labeler is the oracle here; the generator never imports it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llmcxr_app.demo.data import language, questions, splits
from llmcxr_app.demo.data import samples as data
from llmcxr_app.demo.data.findings import Findings, sample_findings
from llmcxr_app.demo.data.reports import QUESTIONS, make_qa, write_findings_prompt
from llmcxr_app.demo.train import recipe
from llmcxr_app.demo.train.config import PRESETS
from llmcxr_app.studio.labeler import label_states, parse_answer

N = 1000


@pytest.fixture(scope="module")
def drawn() -> list[tuple[Findings, str]]:
    rng = np.random.default_rng(20261127)
    out = []
    for _ in range(N):
        f = sample_findings(rng)
        out.append((f, language.findings_text(f, rng)))
    return out


def test_generator_modules_never_import_the_labeler():
    for module in (language, questions, splits):
        tree = ast.parse(Path(module.__file__).read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if "labeler" in n], module.__name__


def test_texts_vary_far_more_than_the_templates(drawn):
    # Findings repeat (25 % of draws are normal, ~100 distinct combinations in 1000 draws), so even a rich
    # writer repeats itself on normal studies and terse one-finding prompts; the templates give ~550 distinct
    # prompts per 1000 and 31 questions. The clinician-style writer must give >= 850 and >= 400.
    rng = np.random.default_rng(1)
    template = {write_findings_prompt(f, rng) for f, _ in drawn}
    rich = {t for _, t in drawn}
    assert len(rich) >= 850 > len(template)
    qs = {q for f, _ in drawn for q, _ in questions.make_rich_qa(f, rng, 1)}
    assert len(qs) >= 400 > len({q for q, _, _ in QUESTIONS})
    for style in language.STYLES:  # every style appears
        assert language.findings_text(Findings(cardiomegaly=True), rng, style)
    lens = [len(t.split()) for _, t in drawn]
    assert min(lens) <= 2 and max(lens) >= 40  # terse prompts and full reports both occur


def test_labels_read_back_from_the_text(drawn):
    """No finding the phantom lacks is read as present (hedges included); most present ones are read.

    The labeler knows the generator's abbreviations (PPM, PNX, eff., consol., cardiomeg., "big heart",
    "?" queries); what it still misses are the generator's deliberate typos ("consoliadtion"), so recall
    stays just below 1: >= 0.97 of present findings must read (0.8 before the labeler learned them).
    """
    hits = positives = 0
    for f, text in drawn[:400]:
        states = label_states(text)
        for label, on in f.label_vector().items():
            if on:
                positives += 1
                hits += states[label] == "present"
            else:
                assert states[label] != "present", (label, text)
    assert hits / positives >= 0.97


def test_hedged_findings_are_uncertain_and_absent():
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(300):
        f = sample_findings(rng)
        h = language.hedge(f, rng)
        if h is None:
            continue
        label, phrase = h
        seen += 1
        assert not f.label_vector()[label]  # the hedged finding is never one the phantom (the drawing) has
        assert label_states(language.cap(phrase) + ".")[label] in ("uncertain", "history"), phrase
    assert seen > 100


def test_reports_findings_and_impression_agree():
    rng = np.random.default_rng(4)
    for _ in range(150):
        f = sample_findings(rng)
        text = language.full_report(f, rng)
        head = re.search(r"(?i)\b(impression|conclusion)\b", text)
        findings_part, impression_part = text[: head.start()], text[head.start() :]
        a, b = label_states(findings_part), label_states(impression_part)
        for label in f.label_vector():
            assert {a[label], b[label]} != {"present", "absent"}, (label, text)


def test_rich_questions_have_answers_that_follow():
    rng = np.random.default_rng(5)
    for _ in range(300):
        f = sample_findings(rng)
        for q, a in questions.make_rich_qa(f, rng, 3):
            assert q and a
            if re.match(r"(?i)(is|any|do|does|can)\b", q) and a in ("Yes.", "No."):
                named = [(len(n), lab) for lab, names in questions.NAMES.items() for n in names if n in q]
                label = max(named)[1] if named else None
                if label is not None and "which" not in q.lower() and "or the" not in q.lower():
                    assert parse_answer(a) == ("yes" if f.label_vector()[label] else "no"), (q, a, f)


def test_validation_seeds_are_never_training_seeds(monkeypatch, tmp_path):
    seen: list[int] = []
    real = data.render_samples

    def spy(seeds, resolution, cache=None):
        seeds = list(seeds)
        seen.extend(seeds)
        return real(seeds, resolution, cache)

    monkeypatch.setattr(data, "render_samples", spy)
    recipe.run_recipe(recipe.load("tiny"), tmp_path)
    assert seen and max(seen) < splits.VAL_SEED_START
    for name in recipe.available():  # every shipped recipe trains on seeds below the validation range
        for stage in recipe.load(name).stages:
            assert stage.config.n_phantoms <= splits.VAL_SEED_START
    assert list(splits.validation_seeds(3)) == [900_000, 900_001, 900_002]
    with pytest.raises(ValueError):
        splits.validation_seeds(5, start=100)


def _sample(seed: int, f: Findings) -> data.Sample:
    return data.Sample(seed, np.zeros((128, 128), np.uint8), f, "Heart size is normal.")


def test_held_out_combinations_never_reach_the_training_examples(monkeypatch, tmp_path):
    held = [
        Findings(pneumothorax="left", effusion="right", effusion_size="small"),
        Findings(pacemaker=True, edema=True),
    ]
    same_side = Findings(pneumothorax="right", effusion="right", effusion_size="large")
    crossed = Findings(pneumothorax="right", effusion="left", effusion_size="small")  # its twin is held out
    kept = [Findings(), same_side, crossed]
    assert all(splits.held_out(f) for f in held) and not any(splits.held_out(f) for f in kept)
    assert splits.held_out(crossed.mirrored()) and not splits.held_out(same_side.mirrored())
    fake = [_sample(i, f) for i, f in enumerate(held + kept)]
    monkeypatch.setattr(data, "render_samples", lambda seeds, resolution, cache=None: list(fake))
    reached: list[Findings] = []
    real = data.build_examples

    def spy(tokenizer, samples, codes, **kw):
        reached.extend(s.findings for s in samples)
        return real(tokenizer, samples, codes, **kw)

    monkeypatch.setattr(data, "build_examples", spy)
    recipe.run_recipe(recipe.load("tiny"), tmp_path)
    # stage 1 (scratch, no hold-out) sees all five; stage 2 (hold_out, mirror twins) the kept ones and the
    # twins that are not held-out combinations (the first held-out phantom's twin is a kept combination)
    twins = [held[0].mirrored(), same_side.mirrored()]
    assert not splits.held_out(held[0].mirrored())
    assert reached[:5] == held + kept and reached[5:] == [*kept, *twins]


def test_recipes_parse_with_fixed_steps_and_refuse_budgets(tmp_path):
    demo, candidate = recipe.load("demo"), recipe.load("round11")
    assert demo.start.path == candidate.start.path == "weights/demo"
    assert all(re.fullmatch(r"[0-9a-f]{40}", r.start.git_commit) for r in (demo, candidate))
    # the shipped weights: round 14, grown to 8 layers and trained on (round 17b), then the two stages of
    # round 22b (the attribute contrast); from round 17b's last stage on, each writes the guidance the app
    # draws with into config.json (no effect on the training)
    trained = recipe.load("round17b").stages
    last = replace(trained[-1], config=replace(trained[-1].config, draw_guidance=2.0))
    contrast = recipe.load("round22b").stages
    assert demo.stages == (*trained[:-1], last, *contrast)
    assert contrast[:1] == recipe.load("round22").stages and contrast[-1].config.focus_cells == "contrast"
    for stage in candidate.stages:
        assert stage.config.lm_budget_s == 0 and stage.config.lm_steps > 0 and stage.mode == "continue_llm"
        assert stage.config.rich_fraction > 0 and stage.config.hold_out
    raw = json.loads((recipe.RECIPES / "round11.json").read_text())
    raw["stages"][0]["config"]["lm_budget_s"] = 600
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="budget"):
        recipe.load(str(bad))
    raw["stages"][0]["config"] = {"no_such_field": 1}
    bad.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="unknown config keys"):
        recipe.load(str(bad))
    with pytest.raises(FileNotFoundError):
        recipe.load("no-such-recipe")
    bad.write_text(json.dumps({"start": None, "stages": []}))
    with pytest.raises(ValueError, match="neither"):
        recipe.load(str(bad))


def test_demo_recipe_writes_the_committed_start(tmp_path):
    """`--recipe demo` starts from the committed round-14 files (weights/demo at its start commit), byte
    for byte, before its stages grow and retrain them into the shipped weights."""
    start = recipe.load("demo").start
    known = subprocess.run(["git", "-C", str(recipe.REPO), "cat-file", "-e", start.git_commit + "^{commit}"])
    if known.returncode != 0:  # a shallow clone or an unpacked archive holds no history to read it from
        pytest.skip(f"commit {start.git_commit[:12]} is not in this checkout's git history")
    names = recipe.materialize_start(start, tmp_path)
    assert any(n.endswith("llm/model.safetensors") for n in names)
    files = ("llm/model.safetensors", "llm/tokenizer.json", "llm/config.json", "vqgan/demo-vqgan.safetensors")
    for rel in files:
        at_start = subprocess.run(
            ["git", "-C", str(recipe.REPO), "show", f"{start.git_commit}:{start.path}/{rel}"],
            capture_output=True,
            check=True,
        ).stdout
        assert (tmp_path / rel).read_bytes() == at_start, rel
    # the tokenizer and VQ-GAN are the shipped ones: the stages grow and train only the LLM
    for rel in ("llm/tokenizer.json", "vqgan/demo-vqgan.safetensors"):
        assert (tmp_path / rel).read_bytes() == (recipe.REPO / start.path / rel).read_bytes(), rel


def test_tiny_recipe_runs_every_mode(tmp_path):
    records = recipe.run_recipe(recipe.load("tiny"), tmp_path)
    assert len(records) == 4 and (tmp_path / "llm" / "model.safetensors").is_file()
    assert records[1] == {"deepened": {"from_layers": 1, "to_layers": 2}}
    assert records[2]["grid_rope"]["from"] == 10000.0 and records[2]["grid_rope"]["grid_width"] == 16
    config = json.loads((tmp_path / "llm" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2  # the round after both stages kept what they made
    assert config["rope_parameters"]["rope_theta"] == records[2]["grid_rope"]["to"]
    saved = json.loads((tmp_path / "training.json").read_text())
    assert saved["config"]["rich_fraction"] > 0 and saved["previous_rounds"][1:] == records[1:3]
    assert len(saved["previous_rounds"]) == 3 and records[3]["lm_steps_run"] == PRESETS["tiny"].lm_steps


def test_template_examples_unchanged_without_rich_text(tiny_tokenizer):
    """rich_fraction 0 consumes the rng as before: the old recipe's examples are the same as the templates'."""
    samples = [_sample(i, sample_findings(np.random.default_rng(i))) for i in range(6)]
    codes = [[0] * 256] * 6
    kw = {"codebook_size": 32, "grid_tokens": 256}
    a = data.build_examples(tiny_tokenizer, samples, codes, rng=np.random.default_rng(0), **kw)
    b = data.build_examples(
        tiny_tokenizer, samples, codes, rng=np.random.default_rng(0), rich_fraction=0.0, **kw
    )
    assert [e.ids for e in a] == [e.ids for e in b]
    c = data.build_examples(
        tiny_tokenizer, samples, codes, rng=np.random.default_rng(0), rich_fraction=1.0, **kw
    )
    assert [e.ids for e in a] != [e.ids for e in c]
    assert make_qa  # the template VQA stays importable for the old recipe
