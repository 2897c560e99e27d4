"""Validation scores of a demo model on clinician-style text: the split that choices between runs use.

    python -m llmcxr_app.demo.evaluate.validation --weights OUT [--n 60] [--n-draw 60] [--n-template 60]

Phantoms and texts come from the validation seeds (data/splits.py: 900,000-909,999), which no training
sampler draws, and every text is written by data/language.py / data/questions.py (clinician style):
- draw: one drawing per request (the app's default sampling, seed = the phantom's seed) from
  language.findings_text(findings, default_rng([seed, 0xD2A])); the independent reader reads the image;
  detection precision / recall / F1 per finding and side / size / zone accuracy;
- draw_held_out: the same on validation phantoms with the finding combinations held out of training;
- vqa: questions.make_rich_qa(findings, default_rng([seed, 0xE7A]), 2) on the phantoms, greedy answers;
- report: greedy reports of the phantoms, micro-F1 by the labeler (the template report the model writes);
- template_vqa: the training templates' questions (reports.make_qa(findings, default_rng([seed, 0xE7A]), 2))
  on --n-template validation phantoms, greedy answers: that the clinician-style rounds kept the old skill;
- vqa_absence: one question per phantom whose yes means a finding is absent (questions.absence_qa, never
  in training), the reply read as a yes / no to it;
- report_answer_agreement: per finding a report states, whether the greedy answer to a clinician-style
  presence question about it (questions.question, default_rng([seed, 0xA6E])) says the same.
This is not the test split: the headline figures come from evaluation.py and the hand-written set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmcxr_app.config import GUIDE_AWAY_FROM, RuntimeConfig, SamplingConfig, Settings
from llmcxr_app.demo.data import language, questions, splits
from llmcxr_app.demo.data.language import surface
from llmcxr_app.demo.data.phantoms import make_phantom
from llmcxr_app.demo.data.reports import make_qa
from llmcxr_app.demo.evaluate.draw import evaluate_draw
from llmcxr_app.demo.evaluate.evaluation import (
    EvalConfig,
    _log,
    _score_reports,
    _text_sampling,
    demo_location,
    get_reader,
)
from llmcxr_app.demo.evaluate.metrics import answers_match, ratio
from llmcxr_app.demo.evaluate.replies import parse_reply
from llmcxr_app.studio.facade import Studio
from llmcxr_app.studio.labeler import LABELS, label_states

HELD_OUT_SEARCH_START = 905_000  # held-out combinations are searched from here (inside the split)


def _draw(
    studio,
    reader,
    seeds: list[int],
    log,
    verbatim=False,
    seed_offset=0,
    sampling: dict | None = None,
) -> dict:
    """Drawing scores of the validation phantoms ``seeds``; ``sampling``: evaluate_draw's sampling keywords
    (temperature, guidance, guide_away_from) over the app's defaults."""
    truths = [make_phantom(s, size=16).findings for s in seeds]
    prompts = [
        language.findings_text(f, np.random.default_rng([s, 0xD2A]))
        for s, f in zip(seeds, truths, strict=True)
    ]
    scores, _ = evaluate_draw(
        studio,
        reader,
        truths,
        seed_start=seeds[0] + seed_offset,  # the drawings' sampling seeds; the texts stay the phantoms'
        log=log,
        prompts=prompts,
        verbatim=verbatim,
        **{"temperature": 1.0, "top_p": 0.92, **(sampling or {})},
    )
    return {
        "micro": scores["prf"]["micro"],
        "per_label": scores["prf"].get("per_label"),
        **{
            k: scores[k]
            for k in ("label_accuracy_mean", "label_accuracy_mean_all_absent", "attribute_accuracy")
            if k in scores
        },
        "n": len(seeds),
        "examples": prompts[:5],
    }


def held_out_seeds(k: int) -> list[int]:
    """The first k validation seeds from HELD_OUT_SEARCH_START whose findings are a held-out combination."""
    found = []
    for seed in range(HELD_OUT_SEARCH_START, splits.VAL_SEED_STOP):
        if splits.held_out(make_phantom(seed, size=16).findings):
            found.append(seed)
            if len(found) == k:
                return found
    raise RuntimeError(f"only {len(found)} held-out validation phantoms found")


def _vqa(
    studio, seeds, prepared, truths, greedy, verbatim: bool, make_questions=questions.make_rich_qa
) -> dict:
    """Accuracy of greedy answers to ``make_questions``'s two questions per phantom (clinician style by
    default; reports.make_qa for the templates' own)."""
    items = []
    for seed, p, f in zip(seeds, prepared, truths, strict=True):
        for q, truth in make_questions(f, np.random.default_rng([seed, 0xE7A]), 2):
            reply = Studio.finish(studio.ask(q, p, sampling=greedy, verbatim=verbatim)).text
            items.append(answers_match(reply, truth))
    return {"accuracy": ratio(sum(items), len(items)), "n": len(items)}


def _absence(studio, seeds, prepared, truths, greedy, verbatim: bool) -> dict:
    """One absence question per phantom ("Is the heart size normal?", questions.absence_qa): accuracy of
    the greedy reply read as a yes / no to that question (replies.parse_reply, kind "absence")."""
    hits = []
    for seed, p, f in zip(seeds, prepared, truths, strict=True):
        q, label, truth = questions.absence_qa(f, np.random.default_rng([seed, 0xAB5]))
        reply = Studio.finish(studio.ask(q, p, sampling=greedy, verbatim=verbatim)).text
        hits.append(parse_reply(reply, "absence", label) == truth)
    return {"accuracy": ratio(sum(hits), len(hits)), "n": len(hits)}


def _agreement(studio, seeds, prepared, reports, greedy, verbatim: bool) -> dict:
    """Whether the answer to a clinician-style presence question agrees with the model's own greedy report
    of the same X-ray (``reports``), per finding the report states (present or absent; hedged skipped)."""
    agree, total = 0, 0
    for seed, p, text in zip(seeds, prepared, reports, strict=True):
        states = label_states(text)
        rng = np.random.default_rng([seed, 0xA6E])
        for label in LABELS:
            if states[label] == "uncertain":
                continue
            q = surface(questions.question("presence", label, rng), rng)
            reply = Studio.finish(studio.ask(q, p, sampling=greedy, verbatim=verbatim)).text
            agree += parse_reply(reply, "presence", label) == ("yes" if states[label] == "present" else "no")
            total += 1
    return {"fraction": ratio(agree, total), "n": total}


def validate(
    studio,
    reader,
    n: int,
    n_draw: int,
    n_held_out: int,
    log=_log,
    verbatim: bool = False,
    n_template: int = 0,
    draw_seed_offset: int = 0,
    guidance: float | None = None,
    guide_away_from: str = SamplingConfig.guide_away_from,
    draw_temperature: float = 1.0,
) -> dict:
    """Every validation figure (see the module docstring); ``verbatim``: draw from the texts and ask the
    questions as written, not as read (studio/reading.py); ``draw_seed_offset``: other sampling seeds for
    the same drawing requests, to see how much the drawing figures move with the sample alone;
    ``guidance``, ``guide_away_from``, ``draw_temperature``: the drawings' SamplingConfig fields (guidance
    None: the checkpoint's default, as the app draws; 1: unguided; temperature 1.0: the app's)."""
    greedy = _text_sampling(EvalConfig(text_sampling="greedy"))
    # The first n phantoms serve reports and questions, the first n_template the templates' questions.
    all_seeds = list(splits.validation_seeds(max(n, n_template)))
    phantoms = [make_phantom(s) for s in all_seeds]
    all_prepared = [studio.prepare(ph.image) for ph in phantoms]
    all_truths = [ph.findings for ph in phantoms]
    seeds, prepared, truths = all_seeds[:n], all_prepared[:n], all_truths[:n]
    t = time.perf_counter()
    report, _, reports = _score_reports(studio, prepared, truths, greedy, log)
    vqa = _vqa(studio, seeds, prepared, truths, greedy, verbatim)
    agreement = _agreement(studio, seeds, prepared, reports, greedy, verbatim)
    absence = _absence(studio, seeds, prepared, truths, greedy, verbatim)
    k = n_template
    template = (
        _vqa(studio, all_seeds[:k], all_prepared[:k], all_truths[:k], greedy, verbatim, make_qa)
        if k
        else None
    )
    off = draw_seed_offset
    g = {"guidance": guidance, "guide_away_from": guide_away_from, "temperature": draw_temperature}
    draw = (
        _draw(studio, reader, list(splits.validation_seeds(n_draw)), log, verbatim, off, g)
        if n_draw
        else None
    )
    held = _draw(studio, reader, held_out_seeds(n_held_out), log, verbatim, off, g) if n_held_out else None
    return {
        "report_micro": report["micro"],
        "vqa": vqa,
        "vqa_absence": absence,
        "template_vqa": template,
        "report_answer_agreement": agreement,
        "draw": draw,
        "draw_held_out": held,
        "seconds": round(time.perf_counter() - t, 1),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--n", type=int, default=60, help="validation phantoms for reports and VQA (2 each)")
    p.add_argument("--n-draw", type=int, default=60, help="drawing requests")
    p.add_argument("--n-held-out", type=int, default=15, help="drawing requests with held-out combinations")
    p.add_argument(
        "--n-template", type=int, default=60, help="validation phantoms for the templates' questions (2 each)"
    )
    p.add_argument(
        "--draw-seed-offset",
        type=int,
        default=0,
        help="shift the drawings' sampling seeds (same texts): how much the drawing figures are sampling noise",
    )
    p.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="the drawings' guidance scale (1 = off; default: the checkpoint's own, as the app draws)",
    )
    p.add_argument(
        "--guide-away-from",
        choices=GUIDE_AWAY_FROM,
        default=SamplingConfig.guide_away_from,
        help="what guidance pushes the drawings away from (studio/guidance.py)",
    )
    p.add_argument(
        "--draw-temperature",
        type=float,
        default=SamplingConfig.temperature,
        help="the drawings' sampling temperature (default %(default)s, the app's)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--verbatim", action="store_true", help="draw from the texts and ask the questions as written"
    )
    p.add_argument("--out", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    torch.set_num_threads(a.threads)
    runtime = RuntimeConfig(device="cpu", quantization="auto", fast_path=False, warmup=False)
    studio = Studio.from_settings(Settings(model=demo_location(a.weights), runtime=runtime))
    reader = get_reader(studio, a.weights / "reader")
    res = validate(
        studio,
        reader,
        a.n,
        a.n_draw,
        a.n_held_out,
        verbatim=a.verbatim,
        n_template=a.n_template,
        draw_seed_offset=a.draw_seed_offset,
        guidance=a.guidance,
        guide_away_from=a.guide_away_from,
        draw_temperature=a.draw_temperature,
    )
    res["draw_guidance"] = studio.info.draw_guidance if a.guidance is None else a.guidance
    res["guide_away_from"] = a.guide_away_from
    res["draw_temperature"] = a.draw_temperature
    res["draw_prompt"] = "verbatim" if a.verbatim else studio.info.draw_prompt
    res["question_prompt"] = "verbatim" if a.verbatim else studio.info.question_prompt
    res["command"] = "python -m llmcxr_app.demo.evaluate.validation " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = json.dumps(res, indent=2)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
