"""demo/evaluate/validation.py: the validation split's scorer runs end to end on the shipped demo model."""

from __future__ import annotations

import json

from llmcxr_app.config import DEMO_DIR
from llmcxr_app.demo.data import splits
from llmcxr_app.demo.data.phantoms import make_phantom
from llmcxr_app.demo.evaluate import validation


def test_validation_cli_scores_every_part_on_validation_seeds(tmp_path, capsys):
    out = tmp_path / "val.json"
    args = ["--weights", str(DEMO_DIR), "--n", "2", "--n-draw", "2", "--n-held-out", "1", "--n-template", "2"]
    args += ["--out", str(out)]
    assert validation.main(args) == 0
    res = json.loads(out.read_text())
    assert res == json.loads(capsys.readouterr().out)
    assert res["vqa"]["n"] == 4  # two clinician-style questions per phantom
    assert res["template_vqa"]["n"] == 4 and 0.0 <= res["template_vqa"]["accuracy"] <= 1.0
    assert res["report_answer_agreement"]["n"] == 14  # seven findings per phantom (none hedged)
    assert 0.0 <= res["report_answer_agreement"]["fraction"] <= 1.0
    assert res["vqa_absence"]["n"] == 2 and 0.0 <= res["vqa_absence"]["accuracy"] <= 1.0
    assert 0.0 <= res["vqa"]["accuracy"] <= 1.0 and 0.0 <= res["report_micro"]["f1"] <= 1.0
    assert res["draw"]["n"] == 2 and res["draw_held_out"]["n"] == 1
    assert len(res["draw"]["examples"]) == 2 and all(res["draw"]["examples"])
    assert res["command"].startswith("python -m llmcxr_app.demo.evaluate.validation --weights")


def test_held_out_seeds_lie_in_the_validation_split_and_hold_a_held_out_combination():
    seeds = validation.held_out_seeds(2)
    assert all(splits.VAL_SEED_START <= s < splits.VAL_SEED_STOP for s in seeds)
    assert all(splits.held_out(make_phantom(s, size=16).findings) for s in seeds)


def test_a_draw_seed_offset_moves_only_the_sampling_seeds(monkeypatch):
    seen = []

    def fake_evaluate_draw(studio, reader, truths, *, seed_start, prompts, **kw):
        seen.append((seed_start, prompts))
        return {"prf": {"micro": {}}}, None

    monkeypatch.setattr(validation, "evaluate_draw", fake_evaluate_draw)
    seeds = list(splits.validation_seeds(3))
    for offset in (0, 7):
        validation._draw(None, None, seeds, log=lambda *a: None, seed_offset=offset)
    (start0, prompts0), (start7, prompts7) = seen
    assert start0 == seeds[0] and start7 == seeds[0] + 7 and prompts7 == prompts0


def test_the_drawings_sampling_reaches_the_scorer_over_the_apps_defaults(monkeypatch):
    seen = []

    def fake_evaluate_draw(studio, reader, truths, *, seed_start, prompts, **kw):
        seen.append(kw)
        return {"prf": {"micro": {}}}, None

    monkeypatch.setattr(validation, "evaluate_draw", fake_evaluate_draw)
    seeds = list(splits.validation_seeds(2))
    validation._draw(None, None, seeds, log=lambda *a: None)
    asked = {"temperature": 0.8, "guidance": 1.0, "guide_away_from": "normal"}
    validation._draw(None, None, seeds, log=lambda *a: None, sampling=asked)
    assert (seen[0]["temperature"], seen[0]["top_p"]) == (1.0, 0.92)  # the app's sampling
    assert {k: seen[1][k] for k in asked} == asked and seen[1]["top_p"] == 0.92
    parsed = validation._parser().parse_args(["--weights", "w", "--draw-temperature", "0.8"])
    assert (
        parsed.draw_temperature == 0.8
        and validation._parser().parse_args(["--weights", "w"]).draw_temperature == 1.0
    )
