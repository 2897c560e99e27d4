"""The hand-written evaluation text set (tests/data/handwritten/) and its scorer (demo/evaluate/handwritten.py):
the files parse, the set is large and varied enough, training code never names it, the expected answers,
the reply parser and the report-consistency check on hand-checked cases, and a smoke run on the shipped
demo model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmcxr_app.config import DEMO_ADAPTER_DIR, DEMO_DIR
from llmcxr_app.demo.data.findings import EFFUSION_SIDES, EFFUSION_SIZES, LABELS, SIDES, ZONES, Findings
from llmcxr_app.demo.data.phantoms import make_phantom
from llmcxr_app.demo.data.reports import QUESTIONS, write_findings_prompt, write_report
from llmcxr_app.demo.evaluate import handwritten as hw
from llmcxr_app.demo.evaluate import handwritten_set as hs
from llmcxr_app.demo.evaluate.reader import ATTRIBUTES
from llmcxr_app.demo.evaluate.replies import UNCLEAR, parse_reply, report_consistency

ROOT = Path(__file__).resolve().parents[1]


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.lower()).strip()


# ------------------------------------------------------------------------------------------------ the set


def test_the_set_parses_and_is_large_enough():
    texts, questions = hs.load_texts(), hs.load_questions()
    assert len(texts) >= 150 and len(questions) >= 100
    assert len({t.id for t in texts}) == len(texts) and len({q.id for q in questions}) == len(questions)
    assert len({_norm(t.text) for t in texts}) == len(texts), "a findings text is repeated"
    assert len({_norm(q.text) for q in questions}) == len(questions), "a question is repeated"


def test_every_label_uses_the_finding_vocabulary():
    allowed = {
        "effusion_side": EFFUSION_SIDES,
        "effusion_size": EFFUSION_SIZES,
        "pneumothorax_side": SIDES,
        "consolidation_zone": ZONES,
    }
    for t in hs.load_texts():
        assert t.present <= set(LABELS) and t.uncertain <= set(LABELS) and not t.present & t.uncertain
        for key, value in t.attributes.items():
            assert value in allowed[key], (t.id, key, value)
            assert key.split("_")[0] in t.present, f"{t.id}: an attribute of a finding not asked for"
    for q in hs.load_questions():
        assert q.kind in hs.KINDS and q.label in LABELS


def test_the_set_covers_every_finding_side_size_zone_and_length():
    texts = hs.load_texts()
    for lab in LABELS:
        assert sum(lab in t.present for t in texts) >= 10, lab
    values = {v for t in texts for v in t.attributes.values()}
    assert set(EFFUSION_SIDES) | set(EFFUSION_SIZES) | set(ZONES) <= values
    words = [len(t.text.split()) for t in texts]
    assert min(words) <= 2 and max(words) >= 40
    assert sum(len(t.present) >= 4 for t in texts) >= 2, "combinations the generator never makes (4+)"
    assert sum(not t.present and not t.uncertain for t in texts) >= 10, "normal studies"
    assert sum(bool(t.uncertain) for t in texts) >= 8, "hedged findings"
    kinds = [q.kind for q in hs.load_questions()]
    assert all(kinds.count(k) >= 5 for k in hs.KINDS)


def test_no_text_or_question_is_one_the_training_generator_writes():
    generated = {
        _norm(write_findings_prompt(make_phantom(s, size=16).findings, np.random.default_rng(s)))
        for s in range(3000)
    }
    assert not {_norm(t.text) for t in hs.load_texts()} & generated
    assert not {_norm(q.text) for q in hs.load_questions()} & {_norm(q) for q, _, _ in QUESTIONS}


def test_training_code_never_names_the_set():
    """The generator and the trainer must not read the evaluation text: no file under demo/data or
    demo/train names its folder or its modules."""
    pattern = re.compile(r"handwritten|tests/data|handwritten_set|replies")
    for folder in ("llmcxr_app/demo/data", "llmcxr_app/demo/train"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            assert not pattern.search(path.read_text()), f"{path.relative_to(ROOT)} names the evaluation set"


def test_a_bad_row_is_reported_by_its_line(tmp_path):
    good = (hs.SET_DIR / "findings.tsv").read_text().splitlines()
    (tmp_path / "findings.tsv").write_text(
        "\n".join([*good[:3], "f999\tterse\tnormal\tcardiomegaly\tBig heart."])
    )
    with pytest.raises(hs.HandwrittenSetError, match="f999: combination"):
        hs.load_texts(tmp_path)
    for bad in ("effusion:middle:small", "effusion:left", "heart", "ett; ett"):
        with pytest.raises(hs.HandwrittenSetError):
            hs.parse_labels(bad)
    present, uncertain, attrs = hs.parse_labels("effusion:bilateral:-; ?pneumothorax:left; ett")
    assert present == {"effusion", "ett"} and uncertain == {"pneumothorax"}
    assert attrs == {"effusion_side": "bilateral"}  # unstated size and hedged side are not scored


# ----------------------------------------------------------------------------------- expected answers


@pytest.mark.parametrize(
    ("findings", "kind", "label", "want"),
    [
        (Findings(cardiomegaly=True), "presence", "cardiomegaly", "yes"),
        (Findings(cardiomegaly=True), "absence", "cardiomegaly", "no"),
        (Findings(), "absence", "effusion", "yes"),
        (Findings(effusion="bilateral", effusion_size="large"), "side", "effusion", "bilateral"),
        (Findings(effusion="left", effusion_size="small"), "size", "effusion", "small"),
        (Findings(effusion="left", effusion_size="small"), "side", "pneumothorax", "no"),
        (Findings(pneumothorax="right", ett=True), "side", "pneumothorax", "right"),
        (Findings(pneumothorax="right", ett=True), "presence", "ett", "yes"),
        (Findings(consolidation="left lower"), "zone", "consolidation", "left lower"),
        (Findings(pacemaker=True), "zone", "consolidation", "no"),
    ],
)
def test_expected_answer_of_hand_checked_phantoms(findings, kind, label, want):
    assert hs.expected_answer(kind, label, findings) == want


def test_expected_answer_of_a_rendered_held_out_phantom():
    f = make_phantom(1_000_000, size=16).findings  # whatever it shows, the answers must follow it
    for q in hs.load_questions():
        got = hs.expected_answer(q.kind, q.label, f)
        present = f.label_vector()[q.label]
        if q.kind in ("presence", "absence"):
            assert got == ("yes" if present == (q.kind == "presence") else "no")
        else:
            assert (got == "no") == (not present)


# ---------------------------------------------------------------------------------------- reply parser


@pytest.mark.parametrize(
    ("reply", "kind", "label", "want"),
    [
        ("Yes.", "presence", "pneumothorax", "yes"),
        ("yep", "presence", "edema", "yes"),
        ("No.", "presence", "pneumothorax", "no"),
        ("None.", "presence", "pacemaker", "no"),
        ("A right-sided pneumothorax is present.", "presence", "pneumothorax", "yes"),
        ("There is no pneumothorax.", "presence", "pneumothorax", "no"),
        ("There is no pneumothorax.", "presence", "cardiomegaly", UNCLEAR),  # about another finding
        ("Right.", "presence", "pneumothorax", "yes"),
        ("Right lower zone.", "presence", "cardiomegaly", UNCLEAR),
        ("Enlarged.", "presence", "cardiomegaly", "yes"),
        ("Normal.", "presence", "cardiomegaly", "no"),
        ("Normal.", "absence", "cardiomegaly", "yes"),
        ("The heart is enlarged.", "absence", "cardiomegaly", "no"),
        ("Endotracheal tube.", "presence", "ett", "yes"),
        ("Right.", "side", "effusion", "right"),
        ("R", "side", "pneumothorax", "right"),
        ("Both sides.", "side", "effusion", "bilateral"),
        ("Left and right.", "side", "effusion", "bilateral"),
        ("There is no pleural effusion.", "side", "effusion", "no"),
        ("There is no pleural effusion.", "side", "pneumothorax", UNCLEAR),
        ("Small.", "size", "effusion", "small"),
        ("Trace.", "size", "effusion", "small"),
        ("It is massive.", "size", "effusion", "large"),
        ("Moderate.", "size", "effusion", UNCLEAR),
        ("Right upper zone.", "zone", "consolidation", "right upper"),
        ("RLL", "zone", "consolidation", "right lower"),
        ("Left base.", "zone", "consolidation", "left lower"),
        ("Upper zone on the left.", "zone", "consolidation", "left upper"),
        ("Lingula.", "zone", "consolidation", "left upper"),
        ("Right.", "zone", "consolidation", UNCLEAR),
        ("I am a demo model ...", "presence", "ett", UNCLEAR),
    ],
)
def test_reply_parser_on_hand_written_answers(reply, kind, label, want):
    assert parse_reply(reply, kind, label) == want


# ------------------------------------------------------------------------------------ report consistency


@pytest.mark.parametrize(
    ("report", "consistent"),
    [
        ("FINDINGS: No pleural effusion or pneumothorax. IMPRESSION: Large right pleural effusion.", False),
        (
            "FINDINGS: A right-sided pneumothorax is present. IMPRESSION: No acute cardiopulmonary process.",
            False,
        ),
        ("FINDINGS: Heart size is normal. Lungs clear. IMPRESSION: No acute cardiopulmonary process.", True),
        ("FINDINGS: Small left effusion. ETT in place. IMPRESSION: Small left pleural effusion.", True),
        ("Small left pleural effusion.", False),  # no impression section
    ],
)
def test_report_consistency_of_hand_written_reports(report, consistent):
    assert report_consistency(report)["consistent"] is consistent


def test_the_generators_own_reports_are_consistent():
    for seed in range(60):
        f = make_phantom(seed, size=16).findings
        report = write_report(f, np.random.default_rng(seed))
        assert report_consistency(report)["consistent"], report


# ----------------------------------------------------------------------------------------------- scorer


def test_phantoms_for_a_question_alternate_with_and_without_the_finding():
    truths = [Findings(ett=i % 3 == 0) for i in range(9)]
    for j in range(5):
        picked = hw.pick_phantoms("ett", truths, j, 4)
        assert [truths[i].ett for i in picked] == [True, False, True, False]
    assert len(set(hw.pick_phantoms("pacemaker", truths, 0, 4))) == 4  # no phantom has it: four without


def test_draw_scores_of_a_perfect_an_all_absent_and_a_failed_reader():
    texts = hs.load_texts()[:40]

    def oracle(t):
        return (
            {lab: lab in t.present for lab in LABELS} | dict.fromkeys(ATTRIBUTES, "none") | dict(t.attributes)
        )

    perfect = hw.draw_scores(texts, [oracle(t) for t in texts])
    assert perfect["detection"]["micro"]["f1"] == 1.0 and perfect["presence_accuracy"] == 1.0
    assert all(v["accuracy"] in (None, 1.0) for v in perfect["attributes"].values())
    absent = hw.draw_scores(
        texts, [dict.fromkeys(LABELS, False) | dict.fromkeys(ATTRIBUTES, "none")] * len(texts)
    )
    assert absent["presence_accuracy"] == absent["presence_accuracy_all_absent_floor"] < 1
    assert absent["detection"]["micro"]["recall"] == 0.0
    failed = hw.draw_scores(texts, [None] * len(texts))
    assert failed["presence_accuracy"] == 0.0 and failed["valid_fraction"] == 0.0


@pytest.mark.skipif(
    not (DEMO_DIR / "llm").exists(), reason="the shipped demo weights are not in this checkout"
)
def test_scorer_smoke_run_on_the_shipped_demo_model(tmp_path):
    out = tmp_path / "hw.json"
    assert hw.main(["--handwritten", "--n", "2", "--json", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["n"] == {"texts": 2, "questions": 2, "vqa_answers": 4, "phantoms": 2}
    m = res["metrics"]
    assert 0 <= m["draw"]["presence_accuracy"] <= 1 and m["draw"]["n"] == 2
    assert 0 <= m["vqa"]["accuracy"] <= 1 and len(res["items"]["vqa"]) == 4
    assert all(it["seed"] >= 1_000_000 for it in res["items"]["vqa"])
    assert 0 <= m["report_consistency"]["consistent_fraction"] <= 1
    assert res["command"].startswith("python -m llmcxr_app.demo.evaluate --handwritten")


@pytest.mark.skipif(
    not (DEMO_ADAPTER_DIR / "config.json").exists(), reason="the shipped demo adapter is not in this checkout"
)
def test_scorer_runs_the_adapter_family_without_the_drawing_part(tmp_path):
    out = tmp_path / "hw.json"
    assert (
        hw.main(["--handwritten", "--weights", "demo-adapter", "--n", "2", "--json", "--out", str(out)]) == 0
    )
    res = json.loads(out.read_text())
    assert res["model"]["family"] == "adapter" and res["metrics"]["draw"] is None
    assert res["n"] == {"texts": 0, "questions": 2, "vqa_answers": 4, "phantoms": 2}
    assert 0 <= res["metrics"]["vqa"]["accuracy"] <= 1
    assert res["metrics"]["report_consistency"]["n"] == 2
    assert "Draw: not scored" in hw.table(res)


def test_the_module_entry_dispatches_on_the_flag():
    run = subprocess.run(
        [sys.executable, "-m", "llmcxr_app.demo.evaluate", "--handwritten", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    assert "--n-phantoms" in run.stdout and "hand-written" in run.stdout
