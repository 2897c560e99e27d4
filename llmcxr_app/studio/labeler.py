"""Rule-based report labeler (keywords + negation scope), in the spirit of NegBio / the CheXpert labeler.

It reads seven findings (a subset of CheXpert's observations, the ones the demo phantoms carry) from free
text: the demo evaluation scores generated reports with it without trusting the generator, and the Draw
self-check (selfcheck.py) compares a drawn image's read-back report with the findings asked for.
Rules, per sentence (split at . ! ? ; : and line breaks):

- a sentence is cut into clauses at contrast words ("but", "however", "although", "with", "there is" ...);
- a mention is negated by a cue BEFORE it in its clause ("no", "not", "without", "negative for", "free of",
  "absence of", "resolved", ...); a comma ends that scope unless a list continues with "or"/"nor"
  ("No effusion, consolidation, or edema." negates all three, "No pneumothorax, small left effusion."
  only the first);
- or by a cue AFTER it in its comma-delimited part ("Pneumothorax has resolved.", "ET tube removed.");
- uncertain mentions ("possible pneumonia", "cannot exclude effusion") count as positive.
A label is positive when any of its mentions is not negated. Sides are the patient's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

LABELS = ("cardiomegaly", "effusion", "pneumothorax", "consolidation", "edema", "ett", "pacemaker")

_PATTERNS: dict[str, str] = {
    "cardiomegaly": (
        r"cardiomegaly|cardiac enlargement|enlarged (?:cardiac silhouette|heart|cardiac size)"
        r"|enlargement of the (?:cardiac silhouette|heart)"
        r"|(?:heart|cardiac silhouette|heart size|cardiac size)(?: is| appears| remains)?"
        r"(?: mildly| moderately| markedly| severely| slightly)? enlarged"
    ),
    "effusion": (
        r"(?<!pericardial )effusions?|pleural fluid|hydro(?:pneumo)?thorax"
        r"|blunt\w* (?:of )?(?:the )?(?:\w+ )?costophrenic"
    ),
    "pneumothorax": r"pneumothora(?:x|ces)|\bptx\b",
    "consolidation": r"consolidat\w*|airspace (?:opacit\w+|disease)|pneumonia|infiltrates?\b",
    "edema": r"o?edema\b|(?:vascular|pulmonary) congestion|kerley|bat-?wing",
    "ett": r"endotracheal(?: tube)?|\bet tube|\bett\b|\bintubated\b",
    "pacemaker": r"pacemaker|\bpacer\b|pacing (?:lead|wire|device)s?|\ba?icd\b",
}
_MENTION = re.compile("|".join(f"(?P<{k}>{v})" for k, v in _PATTERNS.items()))
_SENTENCE_SPLIT = re.compile(r"(?<!\d)\.(?!\d)|[!?;:\n]")
_CLAUSE_SPLIT = re.compile(
    r"\b(?:but|however|although|though|whereas|while|yet|except|with|there (?:is|are|has been|have been))\b"
)
_PRE_NEG = re.compile(
    r"\b(?:no(?!\s+(?:significant\s+|interval\s+)?change)|not|without|negative for|free of|absence of"
    r"|absent|resolved|resolution of|removal of|removed|none|nor|rules? out|ruled out)\b"
)
_POST_NEG = re.compile(
    r"\b(?:resolved|removed|absent|not|no longer|has cleared|have cleared|withdrawn|excluded)\b"
)
_SIDE = re.compile(r"\b(left|right|bilateral|bilaterally|both|bibasilar|bibasal)\b")
_SIZE = re.compile(r"\b(small|trace|tiny|minimal|mild|large|moderate|massive|big|sizeable|extensive)\b")
_ZONE = re.compile(
    r"\b(right|left)(?:[- ]sided)? (upper|lower|middle|base|basal|basilar|apex|apical)\b|\b(rul|rll|lul|lll|rml)\b"
    r"|\b(lingula|lingular)\b"
)
_ZONE_WORD = {"upper": "upper", "lower": "lower", "base": "lower", "basal": "lower", "basilar": "lower"}
_ZONE_WORD |= {"apex": "upper", "apical": "upper"}
_ABBREV = {"rul": "right upper", "rll": "right lower", "lul": "left upper", "lll": "left lower"}


@dataclass(frozen=True)
class Mention:
    label: str  # one of LABELS
    negated: bool
    context: str  # text around the mention that describes it (side, size, zone words)


def _clauses(text: str) -> list[str]:
    out: list[str] = []
    for sentence in _SENTENCE_SPLIT.split(text.lower()):
        pieces = _CLAUSE_SPLIT.split(sentence)
        out.extend(p for p in pieces if p.strip())
    return out


def _pre_negated(clause: str, start: int) -> bool:
    for cue in _PRE_NEG.finditer(clause, 0, start):
        between = clause[cue.end() : start]
        # A comma ends a negation's scope unless the clause goes on to list with "or"/"nor".
        if "," not in between or re.search(r"\b(?:or|nor)\b", clause[cue.end() :]):
            return True
    return False


def _post_negated(clause: str, end: int) -> bool:
    part = clause[end:].split(",", 1)[0]
    cut = _MENTION.search(part)  # a cue after the next finding's mention is that finding's
    return bool(_POST_NEG.search(part[: cut.start()] if cut else part))


def mentions(text: str) -> list[Mention]:
    """Every finding mention in `text`, in order, with its negation and its describing context."""
    out: list[Mention] = []
    for clause in _clauses(text):
        found = list(_MENTION.finditer(clause))
        for i, m in enumerate(found):
            # Adjectives come before the noun ("small left pleural effusion"), prepositional phrases
            # after it ("consolidation in the right lower zone"); a conjunction between two mentions
            # hands the rest of the gap to the second one.
            prev_end = found[i - 1].end() if i else 0
            gap_before = clause[prev_end : m.start()]
            if i:
                conj = re.search(r",|\band\b|\bas well as\b|\bplus\b", gap_before)
                gap_before = gap_before[conj.start() :] if conj else gap_before
            nxt = found[i + 1].start() if i + 1 < len(found) else len(clause)
            after = clause[m.end() : nxt]
            conj = re.search(r",|\band\b|\bas well as\b|\bplus\b", after)
            after = after[: conj.start()] if conj else after
            negated = _pre_negated(clause, m.start()) or _post_negated(clause, m.end())
            context = f"{gap_before} {m.group(0)} {after}"
            out.append(Mention(m.lastgroup or "", negated, context))
            if m.group(0).startswith("hydropneumo"):  # fluid and air: one word, two findings
                out.append(Mention("pneumothorax", negated, context))
    return out


def mentioned_labels(text: str) -> list[str]:
    """Labels mentioned at all (negated or not), in LABELS order."""
    seen = {m.label for m in mentions(text)}
    return [lab for lab in LABELS if lab in seen]


def label_report(text: str) -> dict[str, bool]:
    """Presence of each finding in LABELS order, read from free text."""
    return _presence(mentions(text))


def _presence(found: list[Mention]) -> dict[str, bool]:
    positive = {m.label for m in found if not m.negated}
    return {lab: lab in positive for lab in LABELS}


def _side(contexts: list[str]) -> str | None:
    words = {w for c in contexts for w in _SIDE.findall(c)}
    if words & {"bilateral", "bilaterally", "both", "bibasilar", "bibasal"} or {"left", "right"} <= words:
        return "bilateral"
    return next((s for s in ("left", "right") if s in words), None)


def _size(contexts: list[str]) -> str | None:
    for c in contexts:
        for w in _SIZE.findall(c):
            return "small" if w in ("small", "trace", "tiny", "minimal", "mild") else "large"
    return None


def _zone(contexts: list[str]) -> str | None:
    for c in contexts:
        for m in _ZONE.finditer(c):
            if m.group(1):
                level = _ZONE_WORD.get(m.group(2))
                return f"{m.group(1)} {level}" if level else None  # the middle lobe is no zone of ours
            if m.group(3):
                return _ABBREV.get(m.group(3))
            return "left upper"  # the lingula belongs to the left upper lobe
    return None


def label_details(text: str) -> dict[str, str | None]:
    """Attributes of positive findings: effusion_side / effusion_size / pneumothorax_side /
    consolidation_zone. "none" when the finding is absent, None when present but not stated."""
    return _details(mentions(text))


def read(text: str) -> tuple[dict[str, bool], dict[str, str | None]]:
    """(label_report(text), label_details(text)) from one pass over the text's mentions."""
    found = mentions(text)
    return _presence(found), _details(found)


def _details(found: list[Mention]) -> dict[str, str | None]:
    ctx: dict[str, list[str]] = {lab: [] for lab in LABELS}
    for m in found:
        if not m.negated:
            ctx[m.label].append(m.context)

    def get(label: str, fn: Callable[[list[str]], str | None]) -> str | None:
        return fn(ctx[label]) if ctx[label] else "none"

    return {
        "effusion_side": get("effusion", _side),
        "effusion_size": get("effusion", _size),
        "pneumothorax_side": get("pneumothorax", _side),
        "consolidation_zone": get("consolidation", _zone),
    }


def parse_answer(text: str) -> str:
    """Canonical form of a VQA answer: yes/no, a zone ("right upper"), a side, a size, else the text."""
    t = re.sub(r"\s+", " ", text.lower()).strip()
    t = re.sub(r"^[\s\"'.,:;!?]+|[\s\"'.,:;!?]+$", "", t)
    first = re.match(r"\w+", t)
    if first and first.group(0) in ("yes", "yeah", "true", "present", "positive"):
        return "yes"
    if (
        first
        and first.group(0) in ("no", "none", "false", "absent", "negative")
        or t.startswith("there is no")
    ):
        return "no"
    if len(t.split()) <= 5:
        zone = _zone([t])
        if zone:
            return zone
        side = _side([t])
        if side:
            return side
        size = _size([t])
        if size:
            return size
    return t
