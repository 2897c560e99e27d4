"""Score the demo model on the hand-written evaluation text set (handwritten_set.py, docs/EVAL_TEXT.md).

    python -m llmcxr_app.demo.evaluate --handwritten [--weights demo|demo-adapter|DIR] [--n-phantoms 100] [--json]

Everything goes through the app's own path (load_studio, then prepare, describe, ask, draw), so both model
families are scored the same way; a model that cannot draw (the adapter family) gets VQA and reports only:
- draw: each hand-written findings text is drawn once (one drawing per request, the default sampling
  SamplingConfig(): temperature 1, top_p 0.92; item i samples with seed draw_seed_start + i) and the
  independent reader (reader.py) reads the image: detection precision / recall / F1 of the findings the
  text asks for (hedged ones left out), presence accuracy next to the all-absent floor, and side / size /
  zone accuracy where the text states them;
- VQA: each hand-written question is asked (greedy) on `per_question` held-out phantoms (seeds >= the
  harness's EVAL_SEED_START), half showing the finding asked about and half not; the reply is parsed
  (replies.parse_reply) and compared with handwritten_set.expected_answer of the phantom's findings;
- report consistency: greedy reports of the held-out phantoms; the fraction whose findings and impression
  agree per the labeler (replies.report_consistency), with the reports' label micro-F1 beside it.
Progress goes to stderr; stdout gets a table, or one JSON object with --json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from llmcxr_app.config import DEMO_DIR, RuntimeConfig, SamplingConfig, Settings
from llmcxr_app.demo.data.findings import LABELS, Findings
from llmcxr_app.demo.data.phantoms import make_phantom
from llmcxr_app.demo.data.samples import EVAL_SEED_START
from llmcxr_app.demo.evaluate import reader as reader_mod
from llmcxr_app.demo.evaluate.draw import draw_one
from llmcxr_app.demo.evaluate.evaluation import DEMO_DIRS, get_reader, model_location
from llmcxr_app.demo.evaluate.handwritten_set import (
    SET_DIR,
    Question,
    TextItem,
    expected_answer,
    load_questions,
    load_texts,
)
from llmcxr_app.demo.evaluate.metrics import prf, ratio, read_as
from llmcxr_app.demo.evaluate.replies import UNCLEAR, parse_reply, report_consistency
from llmcxr_app.studio.build import load_studio
from llmcxr_app.studio.facade import Studio, StudioInputError
from llmcxr_app.studio.labeler import label_verdicts
from llmcxr_app.studio.types import ChatModel


@dataclass(frozen=True)
class HandwrittenConfig:
    """One run of the hand-written evaluation."""

    n_texts: int | None = None  # findings texts drawn: the first n of the set (None: all)
    n_questions: int | None = None  # questions asked: the first n of the set (None: all)
    n_phantoms: int = 100  # held-out phantoms (seeds seed_start + i): the VQA pool and the reports
    per_question: int = 2  # phantoms each question is asked on: alternately with and without the finding
    seed_start: int = EVAL_SEED_START  # first held-out phantom seed
    draw_seed_start: int = EVAL_SEED_START  # drawing i samples with seed draw_seed_start + i
    max_new_tokens: int = 512  # text replies stop here at the latest
    verbatim: bool = False  # draw and ask with the texts as written, not as read (studio/reading.py)


def _log(msg: str) -> None:
    print(f"[handwritten {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _greedy(cfg: HandwrittenConfig) -> SamplingConfig:
    return SamplingConfig(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=cfg.max_new_tokens, seed=0)


# ------------------------------------------------------------------------------------------------ drawing


def _draw_reading(item: TextItem, read: dict | None) -> tuple[dict[str, bool | None], dict[str, bool]]:
    """(presence as read, masked to None where the text hedges; truth with hedged findings as False).
    A failed drawing (read None) is read as the opposite of the truth: wrong on every scored finding."""
    truth = item.truth()
    pred = {
        lab: None if t is None else (not t if read is None else bool(read[lab])) for lab, t in truth.items()
    }
    return pred, {lab: bool(t) for lab, t in truth.items()}


def _attribute_scores(items: Sequence[TextItem], reads: Sequence[dict | None]) -> dict:
    """Side / size / zone read from each drawing vs the text, where the text states one (a miss is wrong)."""
    out = {}
    for key, classes in reader_mod.HEADS:
        pairs = [
            (r[key] if r is not None else None, it.attributes[key])
            for it, r in zip(items, reads, strict=True)
            if key in it.attributes
        ]
        hits = sum(a == b for a, b in pairs)
        chance = 1 / len(classes)
        out[key] = {
            "accuracy": ratio(hits, len(pairs)),
            "n": len(pairs),
            "chance": chance,
            "read_as": read_as(pairs),
        }
    return out


def draw_scores(items: Sequence[TextItem], reads: Sequence[dict | None]) -> dict:
    """Detection P/R/F1, presence accuracy vs the all-absent floor, attributes, and F1 by style tag.

    `reads` are the reader's predictions (reader.Reader.predict format), None for a failed drawing.
    """
    pairs = [_draw_reading(it, r) for it, r in zip(items, reads, strict=True)]
    preds, truths = [p for p, _ in pairs], [t for _, t in pairs]
    scored = [(p[lab], t[lab]) for p, t in pairs for lab in LABELS if p[lab] is not None]
    styles = sorted({s for it in items for s in it.style})
    by_style = {}
    for s in styles:
        idx = [i for i, it in enumerate(items) if s in it.style]
        sub = prf([preds[i] for i in idx], [truths[i] for i in idx])
        by_style[s] = {"f1": sub["micro"]["f1"], "n": len(idx)}
    return {
        "detection": prf(preds, truths),
        "presence_accuracy": ratio(sum(p == t for p, t in scored), len(scored)),
        "presence_accuracy_all_absent_floor": ratio(sum(not t for _, t in scored), len(scored)),
        "attributes": _attribute_scores(items, reads),
        "valid_fraction": ratio(sum(r is not None for r in reads), len(reads)),
        "by_style": by_style,
        "n": len(items),
    }


def run_draws(
    studio: Studio, reader: reader_mod.Reader, items: Sequence[TextItem], cfg: HandwrittenConfig, log
) -> tuple[dict, list[dict]]:
    """Draw each text once (default sampling, seed draw_seed_start + i), read it: (scores, per-item records)."""
    reads: list[dict | None] = []
    records = []
    for i, item in enumerate(items):
        sampling = SamplingConfig(seed=cfg.draw_seed_start + i)  # the app's default sampling
        try:
            result = draw_one(studio, item.text, sampling, cfg.verbatim)
        except StudioInputError:  # e.g. a text longer than the context: the model failed this item
            result = None
        read = reader.predict([result.image])[0] if result is not None else None
        reads.append(read)
        got = [lab for lab in LABELS if read and read[lab]]
        attrs = {k: read[k] for k in reader_mod.ATTRIBUTES if read and read[k] != "none"}
        records.append({"id": item.id, "seed": sampling.seed, "read": got, "attributes": attrs})
        if i % 20 == 0:
            log(f"draw {i + 1}/{len(items)}")
    return draw_scores(items, reads), records


# ---------------------------------------------------------------------------------------------------- VQA


def pick_phantoms(label: str, truths: Sequence[Findings], j: int, k: int) -> list[int]:
    """Indices of `k` phantoms for question j about `label`: alternately one showing the finding and one
    not (rotating through each group with j), from one group alone when the other is empty."""
    with_it = [i for i, f in enumerate(truths) if f.label_vector()[label]]
    without = [i for i, f in enumerate(truths) if not f.label_vector()[label]]
    if not (with_it and without):
        group = with_it or without
        return [group[(j * k + t) % len(group)] for t in range(k)]
    half = (k + 1) // 2
    groups = (with_it, without)
    return [groups[t % 2][(j * half + t // 2) % len(groups[t % 2])] for t in range(k)]


def _group(items: list[dict], key: Callable[[dict], Sequence[str]]) -> dict:
    names = sorted({n for it in items for n in key(it)})
    out = {}
    for n in names:
        hits = [it["correct"] for it in items if n in key(it)]
        out[n] = {"accuracy": sum(hits) / len(hits), "n": len(hits)}
    return out


def vqa_scores(items: list[dict]) -> dict:
    """Accuracy overall, by kind, finding and style tag; the share of replies the parser could not read."""
    return {
        "accuracy": ratio(sum(it["correct"] for it in items), len(items)),
        "unclear_fraction": ratio(sum(it["parsed"] == UNCLEAR for it in items), len(items)),
        "by_kind": _group(items, lambda it: [it["kind"]]),
        "by_label": _group(items, lambda it: [it["label"]]),
        "by_style": _group(items, lambda it: it["style"]),
        "n": len(items),
    }


def run_vqa(
    studio: ChatModel, questions: Sequence[Question], seeds, prepared, truths, cfg
) -> tuple[dict, list]:
    """Ask each question (greedy) on its phantoms; (scores, per-answer records)."""
    items = []
    for j, q in enumerate(questions):
        for i in pick_phantoms(q.label, truths, j, cfg.per_question):
            try:
                asking = studio.ask(q.text, prepared[i], sampling=_greedy(cfg), verbatim=cfg.verbatim)
                reply = Studio.finish(asking).text
            except StudioInputError as exc:
                reply = f"(error: {exc})"
            want, got = expected_answer(q.kind, q.label, truths[i]), parse_reply(reply, q.kind, q.label)
            items.append(
                {"id": q.id, "seed": seeds[i], "kind": q.kind, "label": q.label, "style": list(q.style)}
                | {"expected": want, "parsed": got, "correct": want == got, "reply": reply[:120]}
            )
    return vqa_scores(items), items


# ------------------------------------------------------------------------------------------------ reports


def consistency_scores(texts: Sequence[str], truths: Sequence[Findings]) -> dict:
    """Fraction of reports whose findings and impression agree; contradictions / omissions by finding; the
    reports' label micro-F1 against the phantoms (hedged readings left out, as the harness scores)."""
    checks = [report_consistency(t) for t in texts]
    examples = [t for t, c in zip(texts, checks, strict=True) if not c["consistent"]][:3]
    return {
        "consistent_fraction": ratio(sum(c["consistent"] for c in checks), len(checks)),
        "with_impression_fraction": ratio(sum(c["sections"] for c in checks), len(checks)),
        "contradictions": {lab: sum(lab in c["contradictions"] for c in checks) for lab in LABELS},
        "omissions": {lab: sum(lab in c["omissions"] for c in checks) for lab in LABELS},
        "inconsistent_examples": examples,  # model text about synthetic phantoms: no patient data
        "report_micro": prf([label_verdicts(t) for t in texts], [f.label_vector() for f in truths])["micro"],
        "n": len(texts),
    }


# ----------------------------------------------------------------------------------------------- the run


def evaluate_handwritten(
    studio: ChatModel,
    reader: reader_mod.Reader | None,
    cfg: HandwrittenConfig,
    folder: Path = SET_DIR,
    log: Callable[[str], None] = _log,
) -> dict:
    """Every measurement of the module docstring; returns {metrics, n, config, model, timings (s)}.

    ``reader`` None (a model that cannot draw, or no texts asked for): the drawing part is left out and
    metrics["draw"] is None."""
    texts, questions = load_texts(folder)[: cfg.n_texts], load_questions(folder)[: cfg.n_questions]
    timings = {}
    draw, draw_items = None, []
    if reader is not None and texts:
        t = time.perf_counter()
        draw, draw_items = run_draws(studio, reader, texts, cfg, log)
        timings["draw_s"] = time.perf_counter() - t

    t = time.perf_counter()
    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.n_phantoms))
    phantoms = [make_phantom(s) for s in seeds]
    prepared = [studio.prepare(ph.image) for ph in phantoms]
    truths = [ph.findings for ph in phantoms]
    timings["prepare_s"] = time.perf_counter() - t
    log(f"{len(seeds)} held-out phantoms prepared")

    t = time.perf_counter()
    vqa, vqa_items = run_vqa(studio, questions, seeds, prepared, truths, cfg)
    timings["vqa_s"] = time.perf_counter() - t
    log(f"VQA: {vqa['n']} answers")

    t = time.perf_counter()
    reports = [Studio.finish(studio.describe(p, sampling=_greedy(cfg))).text for p in prepared]
    consistency = consistency_scores(reports, truths)
    timings["describe_s"] = time.perf_counter() - t
    return {
        "metrics": {"draw": draw, "vqa": vqa, "report_consistency": consistency},
        "items": {"draw": draw_items, "vqa": vqa_items},
        "n": {
            "texts": len(draw_items),
            "questions": len(questions),
            "vqa_answers": vqa["n"],
            "phantoms": len(seeds),
        },
        "seeds": {
            "phantoms": [cfg.seed_start, cfg.seed_start + cfg.n_phantoms],
            "draw": "draw_seed_start + i",
        },
        "sampling": {
            # guidance None is the checkpoint's own: recorded as the scale the drawings ran at
            "draw": asdict(SamplingConfig())
            | {"seed": "draw_seed_start + i", "guidance": studio.info.draw_guidance},
            "text": asdict(_greedy(cfg)),
        },
        "config": asdict(cfg),
        "model": asdict(studio.info),
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }


def _fmt(v) -> str:
    return "  -  " if v is None else f"{v:.3f}"


def _draw_lines(d: dict) -> list[str]:
    det = d["detection"]["micro"]
    lines = [
        f"Draw, hand-written texts (one drawing each, n={d['n']}): detection P {_fmt(det['precision'])}"
        f" R {_fmt(det['recall'])} F1 {_fmt(det['f1'])}; presence accuracy "
        f"{_fmt(d['presence_accuracy'])} (all-absent floor {_fmt(d['presence_accuracy_all_absent_floor'])})",
    ]
    for k, v in d["attributes"].items():
        lines.append(f"  {k:<20} accuracy {_fmt(v['accuracy'])} (n={v['n']}, chance {v['chance']:.2f})")
    lines.append("  F1 by style: " + ", ".join(f"{s} {_fmt(v['f1'])}" for s, v in d["by_style"].items()))
    return lines


def table(res: dict) -> str:
    """The human-readable summary printed without --json."""
    m = res["metrics"]
    lines = [f"Model: {res['model']['model_name']} ({res['model']['weight_hash']})"]
    lines += _draw_lines(m["draw"]) if m["draw"] else ["Draw: not scored (the model cannot draw)"]
    vqa = m["vqa"]
    kinds = ", ".join(f"{k} {_fmt(v['accuracy'])} (n={v['n']})" for k, v in vqa["by_kind"].items())
    lines.append(
        f"VQA, hand-written questions (greedy, n={vqa['n']}): accuracy {_fmt(vqa['accuracy'])}; {kinds}; "
        f"unparsed replies {_fmt(vqa['unclear_fraction'])}"
    )
    c = m["report_consistency"]
    lines.append(
        f"Report consistency (greedy, n={c['n']}): findings and impression agree {_fmt(c['consistent_fraction'])}"
        f" (impression present {_fmt(c['with_impression_fraction'])}); report micro-F1 "
        f"{_fmt(c['report_micro']['f1'])}"
    )
    lines.append("Timings (s): " + ", ".join(f"{k} {v}" for k, v in res["timings"].items()))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--handwritten", action="store_true", help="(the flag that selects this evaluation)")
    p.add_argument(
        "--weights",
        type=Path,
        default=DEMO_DIR,
        help="demo, demo-adapter, or a folder (the token demo's llm/ and vqgan/, or an adapter checkpoint)",
    )
    p.add_argument("--n", type=int, default=None, help="shorthand: at most N texts, questions and phantoms")
    p.add_argument("--n-texts", type=int, default=None, help="findings texts to draw (default: all)")
    p.add_argument("--n-questions", type=int, default=None, help="questions to ask (default: all)")
    p.add_argument("--n-phantoms", type=int, default=100, help="held-out phantoms (VQA pool, reports)")
    p.add_argument("--per-question", type=int, default=2, help="phantoms each question is asked on")
    p.add_argument("--seed-start", type=int, default=EVAL_SEED_START)
    p.add_argument("--set", type=Path, default=SET_DIR, help="folder of findings.tsv and questions.tsv")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--reader", type=Path, default=None, help="reader folder (default: WEIGHTS/reader)")
    p.add_argument(
        "--verbatim", action="store_true", help="draw from the texts and ask the questions as written"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quantization", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p


def _config(a: argparse.Namespace) -> HandwrittenConfig:
    def cap(v: int | None) -> int | None:
        return a.n if v is None else v if a.n is None else min(v, a.n)

    return HandwrittenConfig(
        n_texts=cap(a.n_texts),
        n_questions=cap(a.n_questions),
        n_phantoms=a.n_phantoms if a.n is None else min(a.n_phantoms, a.n),
        per_question=a.per_question,
        seed_start=a.seed_start,
        max_new_tokens=a.max_new_tokens,
        verbatim=a.verbatim,
    )


def main(argv: list[str] | None = None) -> int:
    """Load the demo model and its reader, run the hand-written evaluation, print the table (or JSON)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    a = p.parse_args(argv)
    if a.seed_start < EVAL_SEED_START:
        p.error(f"--seed-start must be >= {EVAL_SEED_START}: lower seeds are training data.")
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    runtime = RuntimeConfig(device=a.device, quantization=a.quantization, fast_path=False, warmup=False)
    weights = DEMO_DIRS.get(str(a.weights), a.weights)
    studio = load_studio(Settings(model=model_location(weights), runtime=runtime))
    cfg = _config(a)
    reader = None
    if studio.info.can_draw and cfg.n_texts != 0:  # the reader judges drawings; none drawn, none needed
        reader = get_reader(studio, a.reader or weights / "reader", log=_log)
    res = evaluate_handwritten(studio, reader, cfg, a.set)
    res["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
    res["command"] = "python -m llmcxr_app.demo.evaluate " + shlex.join(argv)
    res["environment"] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    res["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json.dumps(res, indent=2)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    print(text if a.json else table(res))
    return 0
