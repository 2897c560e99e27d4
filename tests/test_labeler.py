"""Rule-based labeler, and the text it reads: generated reports, findings prompts, VQA pairs, declines."""

import re
from pathlib import Path

import numpy as np
import pytest
from phantom_answers import answer_for

from llmcxr_app.demo.data.phantoms import LABELS, Findings, sample_findings
from llmcxr_app.demo.data.reports import (
    DECLINES,
    PLAIN_QUESTIONS,
    QUESTIONS,
    make_qa,
    plain_instructions,
    write_findings_prompt,
    write_report,
)
from llmcxr_app.studio.labeler import (
    STATES,
    label_details,
    label_report,
    mentioned_labels,
    parse_answer,
    read_states,
)


def _details(f: Findings) -> dict[str, str]:
    return {
        "effusion_side": f.effusion,
        "effusion_size": f.effusion_size,
        "pneumothorax_side": f.pneumothorax,
        "consolidation_zone": f.consolidation,
    }


def test_labels_read_back_every_generated_report_and_prompt():
    n_words = []
    for seed in range(3000):
        rng = np.random.default_rng(seed)
        f = sample_findings(rng)
        report = write_report(f, rng)
        n_words.append(len(report.split()))
        assert report.startswith("FINDINGS: ") and " IMPRESSION: " in report
        for text in (report, write_findings_prompt(f, rng)):
            assert label_report(text) == f.label_vector(), (f, text)
            assert label_details(text) == _details(f), (f, text)
    assert 15 <= min(n_words) and max(n_words) <= 75 and 30 <= np.mean(n_words) <= 50


def test_reports_vary_and_state_negatives():
    rng = np.random.default_rng(0)
    normal = {write_report(Findings(), rng) for _ in range(60)}
    assert len(normal) > 20  # varied phrasing
    assert all(re.search(r"no (pleural )?effusion or pneumothorax", r.lower()) for r in normal)
    assert all(re.search(r"heart|cardiac", r.lower()) for r in normal)
    f = Findings(effusion="right", effusion_size="large", pneumothorax="left", ett=True, pacemaker=True)
    r = write_report(f, rng).lower()
    assert "large right pleural effusion" in r and "left" in r and "pneumothorax" in r
    assert "endotracheal tube" in r and "carina" in r and "pacemaker" in r


HAND_WRITTEN = [
    # (text, positive labels, details that must hold)
    ("No evidence of pneumothorax.", set(), {"pneumothorax_side": "none"}),
    ("Lungs are clear without effusion.", set(), {}),
    ("Enlarged cardiac silhouette.", {"cardiomegaly"}, {}),
    ("The heart is not enlarged. Heart size is normal.", set(), {}),
    ("Negative for cardiomegaly.", set(), {}),
    ("Pulmonary oedema.", {"edema"}, {}),
    ("Mild pulmonary edema and moderate cardiomegaly.", {"edema", "cardiomegaly"}, {}),
    ("ET tube in place, tip 4 cm above the carina.", {"ett"}, {}),
    ("Endotracheal tube has been removed.", set(), {}),
    ("Interval removal of the endotracheal tube.", set(), {}),
    ("Pacer in the left chest with leads in the right heart.", {"pacemaker"}, {}),
    ("Left-sided AICD.", {"pacemaker"}, {}),
    ("The patient is a 60 year old man with cough and fever.", set(), {}),
    ("Degenerative changes of the thoracic spine. Normal study.", set(), {}),
    (
        "No pneumothorax, but a small left pleural effusion is present.",
        {"effusion"},
        {"effusion_side": "left"},
    ),
    (
        "No pneumothorax; small left effusion.",
        {"effusion"},
        {"effusion_side": "left", "effusion_size": "small"},
    ),
    (
        "No pneumothorax, large right effusion.",
        {"effusion"},
        {"effusion_side": "right", "effusion_size": "large"},
    ),
    ("No effusion, consolidation, or edema.", set(), {}),
    ("Pneumothorax has resolved.", set(), {}),
    ("Resolved right pneumothorax.", set(), {}),
    ("Effusion is present, pneumothorax not seen.", {"effusion"}, {"effusion_side": None}),
    ("Right pleural effusion without pneumothorax.", {"effusion"}, {"effusion_side": "right"}),
    ("No change in the small right pleural effusion.", {"effusion"}, {"effusion_side": "right"}),
    ("Small pericardial effusion.", set(), {}),
    ("Blunting of the left costophrenic angle.", {"effusion"}, {"effusion_side": "left"}),
    ("Small left and right pleural effusions.", {"effusion"}, {"effusion_side": "bilateral"}),
    ("Large right hydropneumothorax.", {"effusion", "pneumothorax"}, {"pneumothorax_side": "right"}),
    (
        "Consolidation in the right lower lobe and a small left pleural effusion.",
        {"consolidation", "effusion"},
        {"consolidation_zone": "right lower", "effusion_side": "left", "effusion_size": "small"},
    ),
    ("Left upper lobe pneumonia.", {"consolidation"}, {"consolidation_zone": "left upper"}),
    ("RLL infiltrate.", {"consolidation"}, {"consolidation_zone": "right lower"}),
    ("Airspace opacity at the left base.", {"consolidation"}, {"consolidation_zone": "left lower"}),
    ("Cannot exclude pneumonia.", set(), {}),  # hedged: uncertain, not present
    ("Tension pneumothorax on the left.", {"pneumothorax"}, {"pneumothorax_side": "left"}),
    ("No acute cardiopulmonary process.", set(), {}),
]


@pytest.mark.parametrize(("text", "positive", "details"), HAND_WRITTEN)
def test_hand_written_sentences(text, positive, details):
    labels = label_report(text)
    assert tuple(labels) == LABELS
    assert {k for k, v in labels.items() if v} == positive
    got = label_details(text)
    for key, want in details.items():
        assert got[key] == want, (key, got)


def test_mentioned_labels_ignores_negation():
    assert mentioned_labels("No pleural effusion or pneumothorax.") == ["effusion", "pneumothorax"]
    assert mentioned_labels("What is the capital of France?") == []


@pytest.mark.parametrize(
    ("answer", "canonical"),
    [
        ("Yes.", "yes"),
        ("yes, on the right", "yes"),
        ("No.", "no"),
        ("There is no pneumothorax.", "no"),
        ("Right.", "right"),
        ("  left side ", "left"),
        ("Bilateral.", "bilateral"),
        ("Both sides.", "bilateral"),
        ("Small.", "small"),
        ("Large", "large"),
        ("Right upper zone.", "right upper"),
        ("Left lower lobe", "left lower"),
        ("Enlarged.", "enlarged"),
        ("Endotracheal tube and pacemaker.", "endotracheal tube and pacemaker"),
    ],
)
def test_parse_answer(answer, canonical):
    assert parse_answer(answer) == canonical


def test_qa_answers_match_findings_and_are_balanced():
    rng = np.random.default_rng(1)
    yes = no = 0
    for seed in range(400):
        f = sample_findings(np.random.default_rng(seed))
        for q, a in make_qa(f, rng, 6):
            assert answer_for(q, f) == a
            kind, label = next((k, lab) for qq, k, lab in QUESTIONS if qq == q)
            if kind == "presence":
                assert a in ("Yes.", "No.") and (a == "Yes.") == f.label_vector()[label]
                yes, no = yes + (a == "Yes."), no + (a == "No.")
            elif kind == "side" and f.label_vector()[label]:
                assert parse_answer(a) == (f.effusion if label == "effusion" else f.pneumothorax)
            elif kind == "size" and f.label_vector()[label]:
                assert parse_answer(a) == f.effusion_size
            elif kind == "zone" and f.label_vector()[label]:
                assert parse_answer(a) == f.consolidation
            elif kind in ("side", "size", "zone"):
                assert parse_answer(a) == "no"
    assert 0.4 < yes / (yes + no) < 0.6


def test_answer_for_pool_and_rephrasings():
    f = Findings(effusion="left", effusion_size="large", pacemaker=True)
    assert answer_for("Is there a pleural effusion?", f) == "Yes."
    assert answer_for("  is there a PNEUMOTHORAX? ", f) == "No."
    assert answer_for("Which side is the pleural effusion on?", f) == "Left."
    assert answer_for("How large is the effusion?", f) == "Large."
    assert answer_for("Where is the pneumothorax?", f) == "There is no pneumothorax."
    assert answer_for("Which support devices are present?", f) == "Pacemaker."
    assert answer_for("What is the heart size?", f) == "Normal."
    # Rephrasings outside the pool are understood through the labeler's vocabulary.
    assert answer_for("Is there a pacer?", f) == "Yes."
    assert answer_for("What side is the effusion on?", f) == "Left."
    assert answer_for("Is there pneumonia?", f) == "No."
    assert answer_for("What is the capital of France?", f) is None
    assert answer_for("Is there an effusion or a pneumothorax?", f) is None  # two findings: ambiguous
    for q, _, _ in QUESTIONS:
        assert answer_for(q, Findings()) is not None


def test_plain_instructions_are_declined():
    assert len(set(PLAIN_QUESTIONS)) >= 30
    pairs = plain_instructions(np.random.default_rng(0), 30)
    assert len({q for q, _ in pairs}) == 30  # distinct while the pool lasts
    assert len(plain_instructions(np.random.default_rng(0), 50)) == 50
    for q, a in pairs:
        assert a in DECLINES and "synthetic chest X-ray phantoms" in a
        assert answer_for(q, Findings()) is None or q in [qq for qq, _, _ in QUESTIONS]
    assert len({a for _, a in plain_instructions(np.random.default_rng(1), 60)}) == len(DECLINES)


# --- Hand-labelled clinical sentences (tests/data/labeler_*.tsv; docs/LABELER.md has the measured table) ---

DATA = Path(__file__).parent / "data"


def _load(name: str) -> list[tuple[str, dict[str, tuple[str, str | None]]]]:
    """Rows of a labelled file: (text, {label: (state, side or None)}); unlisted labels are "none"."""
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        text, _, labels = line.partition("\t")
        truth = {}
        for item in filter(None, (x.strip() for x in labels.split(";"))):
            label, state, *side = item.split(":")
            assert label in LABELS and state in STATES, item
            truth[label] = (state, side[0] if side else None)
        rows.append((text, truth))
    return rows


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None  # undefined (nothing read / nothing true), shown as "-"


def _fmt(x: float | None) -> str:
    return "  - " if x is None else f"{x:.2f}"


def score(rows) -> dict:
    """Per label: precision / recall of "present" and of "absent", and 4-state accuracy; plus side accuracy."""
    counts = {lab: dict.fromkeys(("tp", "fp", "fn", "atp", "afp", "afn", "right"), 0) for lab in LABELS}
    sides = [0, 0]
    for text, truth in rows:
        states, details = read_states(text)
        for lab in LABELS:
            want, side = truth.get(lab, ("none", None))
            got, c = states[lab], counts[lab]
            c["tp"] += want == got == "present"
            c["fp"] += got == "present" != want
            c["fn"] += want == "present" != got
            c["atp"] += want == got == "absent"
            c["afp"] += got == "absent" != want
            c["afn"] += want == "absent" != got
            c["right"] += want == got
            if side and lab in ("effusion", "pneumothorax"):
                sides[0] += details[f"{lab}_side"] == side
                sides[1] += 1
    table = {}
    for lab, c in counts.items():
        table[lab] = {
            "P": _ratio(c["tp"], c["tp"] + c["fp"]),
            "R": _ratio(c["tp"], c["tp"] + c["fn"]),
            "absent_P": _ratio(c["atp"], c["atp"] + c["afp"]),
            "absent_R": _ratio(c["atp"], c["atp"] + c["afn"]),
            "state_acc": c["right"] / len(rows),
            "n_present": c["tp"] + c["fn"],
        }
    tp, fp, fn = (sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn"))
    table["micro"] = {"P": tp / (tp + fp), "R": tp / (tp + fn), "F1": 2 * tp / (2 * tp + fp + fn)}
    table["side_acc"] = sides[0] / max(sides[1], 1)
    return table


def _print(name: str, table: dict) -> None:
    print(f"\n{name}: label  P(present) R(present) P(absent) R(absent) state-acc n-present")
    for lab in LABELS:
        t = table[lab]
        print(
            f"  {lab:14s} {_fmt(t['P'])} {_fmt(t['R'])} {_fmt(t['absent_P'])} {_fmt(t['absent_R'])}"
            f" {t['state_acc']:.2f} {t['n_present']}"
        )
    m = table["micro"]
    print(f"  micro P {m['P']:.3f} R {m['R']:.3f} F1 {m['F1']:.3f}; side accuracy {table['side_acc']:.2f}")


@pytest.mark.parametrize(
    ("name", "floor"),
    [
        ("labeler_dev.tsv", 0.95),
        ("labeler_heldout.tsv", 0.85),
        ("labeler_heldout2.tsv", 0.85),
        ("labeler_plain_dev.tsv", 0.95),
        ("labeler_plain_heldout.tsv", 0.6),  # scored clean once (micro-F1 0.81); its misses then led dev
        ("labeler_plain_heldout2.tsv", 0.6),  # scored once after that: micro-F1 0.89 (docs/LABELER.md)
    ],
)
def test_hand_labelled_sets(name, floor):
    rows = _load(name)
    assert len(rows) >= 40
    table = score(rows)
    _print(name, table)
    assert table["micro"]["F1"] >= floor
    for lab in LABELS:
        if table[lab]["n_present"] >= 5:  # too few positives for a per-label floor otherwise
            assert table[lab]["P"] >= floor - 0.1 and table[lab]["R"] >= floor - 0.1, (lab, table[lab])
    assert table["side_acc"] >= floor


def test_hand_labelled_sets_are_big_enough_and_distinct():
    names = ("dev", "heldout", "heldout2", "plain_dev", "plain_heldout", "plain_heldout2")
    dev, held, held2, *plain = (_load(f"labeler_{x}.tsv") for x in names)
    assert len(dev) + len(held) + len(held2) >= 300 and all(len(rows) >= 40 for rows in plain)
    texts = [t for rows in (dev, held, held2, *plain) for t, _ in rows]
    assert len(set(texts)) == len(texts)  # no sentence in two sets


def test_speed_per_report():
    """The labeler's budget: <= 20 ms per report on one CPU core (measured figure in docs/LABELER.md)."""
    import time

    texts = [t for name in ("labeler_dev.tsv", "labeler_heldout.tsv") for t, _ in _load(name)]
    report = " ".join(texts[:12])  # a 12-sentence report, longer than the demo's
    read_states("warm up")  # builds the pipeline once
    start = time.perf_counter()
    for _ in range(50):
        read_states(report)
    per_report_ms = (time.perf_counter() - start) / 50 * 1000
    print(f"\nlabeler: {per_report_ms:.2f} ms per 12-sentence report")
    assert per_report_ms <= 20
