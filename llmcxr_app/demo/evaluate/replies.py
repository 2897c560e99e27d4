"""Reading the model's free-text replies for the hand-written evaluation (handwritten.py): a VQA answer
parsed to the canonical form of handwritten_set.expected_answer, and whether a report's findings and
impression sections agree. Pure functions of text (the rule-based labeler does the finding reading).
"""

from __future__ import annotations

import re

from llmcxr_app.demo.data.findings import LABELS
from llmcxr_app.studio.labeler import label_states

UNCLEAR = "unclear"  # a reply that names none of the answers the question allows (always scored wrong)
_YES = {"yes", "yeah", "yep", "y", "true", "present", "positive", "seen", "correct", "affirmative"}
_NO = {"no", "nope", "n", "none", "false", "absent", "negative", "nil", "not", "without"}
# Free-text answers to "is the heart big?" that the labeler does not read as a finding on their own.
_HEART_WORDS = {"enlarged": "yes", "big": "yes", "large": "yes", "normal": "no", "small": "no"}
_CLEAR_WORDS = {"normal", "clear", "free", "sharp", "fine", "unremarkable"}
_SMALL = {"small", "tiny", "trace", "minimal", "little", "mild", "minor"}
_LARGE = {"large", "big", "massive", "huge", "sizeable", "sizable", "extensive", "substantial"}
_LEVEL = {"upper": "upper", "apex": "upper", "apical": "upper", "lower": "lower", "base": "lower"}
_LEVEL |= {"basal": "lower", "basilar": "lower"}
_LOBES = {"rul": "right upper", "rll": "right lower", "lul": "left upper", "lll": "left lower"}
_ZONE = re.compile(
    r"\b(right|left|r|l)(?:[- ]sided)?\s+(?:lung\s+)?(upper|lower|apex|apical|base|basal|basilar)\b"
    r"|\b(upper|lower)\s+(?:zone|lobe)?\s*(?:on\s+the\s+|of\s+the\s+)?(right|left)\b"
    r"|\b(rul|rll|lul|lll)\b|\b(lingula|lingular)\b|\b(retrocardiac)\b"
)
_IMPRESSION = re.compile(r"(?im)(?:^|(?<=[\s.]))(?:impression|conclusion|imp|summary|opinion)\s*:")
_PATHOLOGY = ("cardiomegaly", "effusion", "pneumothorax", "consolidation", "edema")  # not the devices


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _yes_no(words: list[str]) -> str | None:
    """The reply's first word read as "yes" / "no", else None ("There is no X." is left to the labeler:
    X may be another finding than the one asked about)."""
    if not words:
        return None
    if words[0] in _YES:
        return "yes"
    return "no" if words[0] in _NO else None


def parse_side(text: str) -> str | None:
    """The side named in a short reply ("R", "both sides", "left and right")."""
    words = set(_words(text))
    sides = {"left" for w in words if w in ("left", "l", "lt")} | {
        "right" for w in words if w in ("right", "r", "rt")
    }
    if words & {"bilateral", "bilaterally", "both", "bibasal", "bibasilar"} or len(sides) == 2:
        return "bilateral"
    return next(iter(sides), None)


def parse_size(text: str) -> str | None:
    """The size named: "small" / "large" from size words ("trace", "massive", ...); None for "moderate" or none."""
    for w in _words(text):
        if w in _SMALL:
            return "small"
        if w in _LARGE:
            return "large"
    return None


def parse_zone(text: str) -> str | None:
    """A consolidation zone ("right lower") from "RLL", "left base", "upper zone on the right", "lingula"."""
    m = _ZONE.search(text.lower())
    if m is None:
        return None
    side_word = m.group(1) or m.group(4)
    if side_word:
        side = {"r": "right", "l": "left"}.get(side_word, side_word)
        level = _LEVEL.get(m.group(2) or m.group(3) or "")
        return f"{side} {level}" if level else None
    if m.group(5):
        return _LOBES[m.group(5)]
    return "left upper" if m.group(6) else "left lower"  # the lingula is in the left upper lobe


def _presence(text: str, label: str) -> str | None:
    """A presence reply read as "yes" / "no": its first word, else the labeler's reading of the finding."""
    words = _words(text)
    direct = _yes_no(words)
    if direct:
        return direct
    states = label_states(text)
    if states[label] in ("present", "absent"):
        return "yes" if states[label] == "present" else "no"
    if any(s != "none" for s in states.values()):  # the reply is about another finding
        return None
    if label == "cardiomegaly" and words and words[0] in _HEART_WORDS:
        return _HEART_WORDS[words[0]]
    named = {"effusion": parse_side(text) or parse_size(text), "pneumothorax": parse_side(text)}
    if named.get(label) or (label == "consolidation" and parse_zone(text)):  # "Right." to "any PTX?"
        return "yes"
    return None


def parse_reply(text: str, kind: str, label: str) -> str:
    """The canonical answer a reply gives (the form of handwritten_set.expected_answer), else UNCLEAR.

    presence: yes / no; absence (a question asking whether the finding is absent, "is the heart size
    normal?"): yes / no as a reply to that question; side / size / zone: the value named, or "no" when the
    reply says the finding is not there.
    """
    if kind == "presence":
        return _presence(text, label) or UNCLEAR
    words = _words(text)
    if kind == "absence":
        direct = _yes_no(words)
        if direct:
            return direct
        if words and words[0] in _CLEAR_WORDS:
            return "yes"
        flipped = _presence(text, label)  # a reply describing the finding answers "is it free of it?" no
        return {"yes": "no", "no": "yes"}.get(flipped or "", UNCLEAR)
    states = label_states(text)
    if _yes_no(words) == "no" or states[label] == "absent":
        return "no"
    if states[label] == "none" and any(s != "none" for s in states.values()):  # about another finding
        return UNCLEAR
    value = {"side": parse_side, "size": parse_size, "zone": parse_zone}[kind](text)
    return value or UNCLEAR


def split_report(text: str) -> tuple[str, str] | None:
    """(findings part, impression part) of a report, or None when it has no impression header."""
    m = _IMPRESSION.search(text)
    if m is None:
        return None
    return text[: m.start()], text[m.end() :]


def report_consistency(text: str) -> dict:
    """Whether a report's findings and impression agree, per the labeler.

    contradictions: findings present in one section and negated in the other; omissions: a pathology
    (devices excepted: "support devices in place" names none) present in one section and not mentioned in
    the other. consistent: the report has both sections and neither. Returns {consistent, sections,
    contradictions, omissions}.
    """
    parts = split_report(text)
    if parts is None:
        return {"consistent": False, "sections": False, "contradictions": [], "omissions": []}
    body, impression = (label_states(p) for p in parts)
    contradictions = [lab for lab in LABELS if {body[lab], impression[lab]} == {"present", "absent"}]
    omissions = [lab for lab in _PATHOLOGY if {body[lab], impression[lab]} == {"present", "none"}]
    return {
        "consistent": not contradictions and not omissions,
        "sections": True,
        "contradictions": contradictions,
        "omissions": omissions,
    }
