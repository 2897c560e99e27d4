"""The hand-written evaluation text set (tests/data/handwritten/): findings texts and VQA questions written by
hand in styles the training generator (demo/data/reports.py) never produces. Training never reads it; the
demo/data and demo/train packages must not name it (tests/test_handwritten.py checks that).

Pure functions only (no model): reading the two TSV files, the labels of a findings text, the expected answer
of a question for a phantom's findings, a robust parser of the model's answers, and the consistency of a
report's findings and impression sections. docs/EVAL_TEXT.md states the conventions.

findings.tsv: id, style (comma-separated tags), combination, labels, text ("\\n" in a text is a line break).
    labels: "normal", or "; "-separated items: cardiomegaly | edema | ett | pacemaker |
    effusion:SIDE:SIZE | pneumothorax:SIDE | consolidation:ZONE, "-" where the text does not state it;
    a "?" prefix marks a finding the text only hedges (left out of every score). A finding not listed is
    absent: a findings request asks for exactly what it names.
questions.tsv: id, style, kind (presence | absence | side | size | zone), label (a LABELS finding), question.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmcxr_app.demo.data.findings import EFFUSION_SIDES, EFFUSION_SIZES, LABELS, SIDES, ZONES, Findings

SET_DIR = Path(__file__).resolve().parents[3] / "tests" / "data" / "handwritten"
KINDS = ("presence", "absence", "side", "size", "zone")
# Which attribute each labelled finding may carry, its reader key and its allowed values.
_ATTRS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "effusion": (("effusion_side", EFFUSION_SIDES), ("effusion_size", EFFUSION_SIZES)),
    "pneumothorax": (("pneumothorax_side", SIDES),),
    "consolidation": (("consolidation_zone", ZONES),),
}
_KIND_LABELS = {"side": ("effusion", "pneumothorax"), "size": ("effusion",), "zone": ("consolidation",)}


class HandwrittenSetError(ValueError):
    """A row of the hand-written set breaks its format (the message names the file's row)."""


@dataclass(frozen=True)
class TextItem:
    """One hand-written findings text and what it asks for."""

    id: str  # "f001"
    style: tuple[str, ...]  # style tags ("abbrev", "hedge", ...)
    combination: str  # present findings joined by "+" in LABELS order ("?" marks hedged ones), or "normal"
    present: frozenset[str]  # findings the text asks for (LABELS names)
    uncertain: frozenset[str]  # findings the text only hedges: scored neither way
    attributes: Mapping[str, str]  # stated attributes of present findings (reader keys -> value)
    text: str  # the findings text, line breaks restored

    def truth(self) -> dict[str, bool | None]:
        """Presence per LABELS finding: True asked for, None hedged (not scored), False absent."""
        return {lab: None if lab in self.uncertain else lab in self.present for lab in LABELS}


@dataclass(frozen=True)
class Question:
    """One hand-written VQA question about one finding."""

    id: str  # "q001"
    style: tuple[str, ...]  # style tags
    kind: str  # one of KINDS: what the answer names
    label: str  # the LABELS finding it asks about
    text: str  # the question as typed


def _rows(path: Path, header: list[str]) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(reader)
    if not rows or rows[0] != header:
        raise HandwrittenSetError(f"{path.name}: the header must be {header}, got {rows[:1]}")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header) or not all(x.strip() for x in row):
            raise HandwrittenSetError(f"{path.name} line {n}: {len(header)} non-empty tab-separated fields")
        out.append(dict(zip(header, row, strict=True)))
    return out


def parse_labels(spec: str) -> tuple[frozenset[str], frozenset[str], dict[str, str]]:
    """A labels field -> (present findings, hedged findings, stated attributes of the present ones)."""
    if spec.strip() == "normal":
        return frozenset(), frozenset(), {}
    present, uncertain, attrs = set(), set(), {}
    for item in (x.strip() for x in spec.split(";")):
        hedged = item.startswith("?")
        name, *values = item.lstrip("?").split(":")
        if name not in LABELS or name in present | uncertain:
            raise HandwrittenSetError(f"unknown or repeated finding {name!r} in {spec!r}")
        slots = _ATTRS.get(name, ())
        if len(values) != len(slots):
            raise HandwrittenSetError(f"{name!r} takes {len(slots)} attribute(s) in {spec!r}")
        (uncertain if hedged else present).add(name)
        for (key, allowed), value in zip(slots, values, strict=True):
            if value != "-" and value not in allowed:
                raise HandwrittenSetError(f"{key} {value!r} is not one of {allowed} in {spec!r}")
            if value != "-" and not hedged:
                attrs[key] = value
    return frozenset(present), frozenset(uncertain), attrs


def combination(present: frozenset[str], uncertain: frozenset[str]) -> str:
    """The combination column: findings in LABELS order joined by "+" ("?" before hedged), or "normal"."""
    names = [("?" if lab in uncertain else "") + lab for lab in LABELS if lab in present | uncertain]
    return "+".join(names) or "normal"


def load_texts(folder: Path = SET_DIR) -> list[TextItem]:
    """Every row of findings.tsv, checked (labels in the finding vocabulary, combination column agrees)."""
    items = []
    for row in _rows(folder / "findings.tsv", ["id", "style", "combination", "labels", "text"]):
        present, uncertain, attrs = parse_labels(row["labels"])
        if combination(present, uncertain) != row["combination"]:
            raise HandwrittenSetError(
                f"{row['id']}: combination {row['combination']!r} disagrees with labels"
            )
        style = tuple(row["style"].split(","))
        text = row["text"].replace("\\n", "\n")
        items.append(TextItem(row["id"], style, row["combination"], present, uncertain, attrs, text))
    return items


def load_questions(folder: Path = SET_DIR) -> list[Question]:
    """Every row of questions.tsv, checked (kind and label known, the kind fits the finding)."""
    out = []
    for row in _rows(folder / "questions.tsv", ["id", "style", "kind", "label", "question"]):
        kind, label = row["kind"], row["label"]
        if kind not in KINDS or label not in LABELS or label not in _KIND_LABELS.get(kind, LABELS):
            raise HandwrittenSetError(f"{row['id']}: kind {kind!r} does not fit finding {label!r}")
        out.append(Question(row["id"], tuple(row["style"].split(",")), kind, label, row["question"]))
    return out


def expected_answer(kind: str, label: str, f: Findings) -> str:
    """The canonical answer to a question of `kind` about `label` for a phantom with findings `f`:
    "yes" / "no" (presence; absence asks "is it free of it?"), else the side ("left", "right", "bilateral"),
    size ("small", "large") or zone ("right upper", ...); "no" when the finding asked about is absent."""
    present = f.label_vector()[label]
    if kind == "presence":
        return "yes" if present else "no"
    if kind == "absence":
        return "no" if present else "yes"
    if not present:
        return "no"
    if kind == "side":
        return f.effusion if label == "effusion" else f.pneumothorax
    if kind == "size":
        return f.effusion_size
    if kind == "zone":
        return f.consolidation
    raise ValueError(f"unknown question kind {kind!r}")
