"""Report labeler: seven findings read from free text with negspacy's NegEx on spaCy, and sections.

It reads seven findings (a subset of CheXpert's observations, the ones the demo phantoms carry) from free
text: the demo evaluation scores generated reports with it, the Draw self-check (selfcheck.py) compares a
drawn image's read-back report with the findings asked for, and Auto routing asks it whether a text
describes findings. Pipeline (built once per process, see `_nlp`):

- spaCy's blank English tokenizer and a sentencizer (sentences end at . ! ? ; and line breaks);
- a target matcher: the regular expressions of labeler_vocab.TARGETS (mentions) and NORMAL (statements of
  normality, "heart size is normal"), longest match first, become the document's entities;
- three negspacy `Negex` components (NegEx, Chapman et al. 2001): negation with negspacy's clinical
  termset extended by labeler_vocab.NEGATION_ADD (extension `negex`), hedges with labeler_vocab.HEDGE
  (`hedged`), history / the study's question with labeler_vocab.HISTORY (`historical`);
- sections (`_sections`, below): a mention under a HISTORY / INDICATION / COMPARISON / TECHNIQUE header.

Each mention gets one of four states: "present"; "absent" (negated, resolved/removed, or a normal
statement); "uncertain" (hedged: "may represent", "cannot exclude", "question of"); "history" (in a
HISTORY/INDICATION section, the patient's history: "history of CHF", or the question of the study:
"evaluate for pneumothorax") which is not a finding of this study. A finding's state: present if any
mention is present, else uncertain if any is, else absent if any is, else "none" (not mentioned). Sides
are the patient's. docs/LABELER.md has the measured precision / recall and speed.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from llmcxr_app.studio import labeler_vocab as vocab

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

LABELS = ("cardiomegaly", "effusion", "pneumothorax", "consolidation", "edema", "ett", "pacemaker")
STATES = ("present", "absent", "uncertain", "none")  # a finding's state in a text; "none": not mentioned

_TARGET = re.compile(
    "|".join(
        rf"(?P<{kind}_{label}_{i}>\b(?:{p})\b)"
        for kind, table in (("n", vocab.NORMAL), ("t", vocab.TARGETS))
        for label, pats in table.items()
        for i, p in enumerate(pats)
    )
)
_HISTORY_SECTIONS = frozenset({"history", "comparison"})
_SIDE = re.compile(r"\b(left|right|bilateral|bilaterally|bilat|both|bibasilar|bibasal|l|r)\b")
_SIZE = re.compile(rf"\b({'|'.join(vocab.SIZE_SMALL + vocab.SIZE_LARGE)})\b")
_ZONE = re.compile(
    r"\b(right|left|r|l)(?:[- ]sided)? (upper|lower|middle|base|basal|basilar|apex|apical)\b|\b(rul|rll|lul|lll|rml)\b"
    r"|\b(lingula|lingular)\b"
)
_ZONE_WORD = {"upper": "upper", "lower": "lower", "base": "lower", "basal": "lower", "basilar": "lower"}
_ZONE_WORD |= {"apex": "upper", "apical": "upper"}
_ABBREV = {"rul": "right upper", "rll": "right lower", "lul": "left upper", "lll": "left lower"}
_SIDE_WORD = {"l": "left", "r": "right"}
_QUERY = re.compile(r"\?(?=[^\W\d_])")  # a question mark directly before a letter
_ABBREVIATION_DOT = re.compile(
    rf"\b({'|'.join(vocab.SHORTENED)})\.(?=[ \t]+(?:{'|'.join(vocab.ATTACHED)})\b)", re.IGNORECASE
)
_CONJ = re.compile(r",|\band\b|\bas well as\b|\bplus\b|\bwith\b")


@dataclass(frozen=True)
class Mention:
    label: str  # one of LABELS
    negated: bool  # True unless the mention states the finding as present (absent, hedged or history)
    context: str  # text around the mention that describes it (side, size, zone words), lower case
    state: str = "present"  # "present" / "absent" / "uncertain" / "history" (see the module docstring)


def _termset(base: dict[str, list[str]], add: dict, drop: dict | None = None) -> dict[str, list[str]]:
    """A negspacy termset (its four keys) from `base` plus `add` less `drop`; a fresh dict, because
    negspacy's `termset.add_patterns` edits the module-level lists its own defaults share."""
    drop = drop or {}
    keys = ("pseudo_negations", "preceding_negations", "following_negations", "termination")
    return {k: sorted((set(base.get(k, ())) | set(add.get(k, ()))) - set(drop.get(k, ()))) for k in keys}


@lru_cache(maxsize=1)
def _nlp() -> Language:
    """The spaCy pipeline, built once per process (about 0.2 s to build; importing spaCy takes longer)."""
    import negspacy.negation  # noqa: F401  registers negspacy's "negex" factory
    import spacy
    from negspacy.termsets import termset
    from spacy.language import Language
    from spacy.util import filter_spans

    if not Language.has_factory("cxr_targets"):

        @Language.component("cxr_targets")
        def cxr_targets(doc: Doc) -> Doc:
            spans = []
            for m in _TARGET.finditer(doc.text.lower()):
                span = doc.char_span(m.start(), m.end(), label=m.lastgroup or "", alignment_mode="expand")
                if span is not None:
                    spans.append(span)
            doc.ents = filter_spans(spans)  # overlapping matches: the longest wins
            return doc

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer", config={"punct_chars": [".", "!", "?", ";", "\n"]})
    nlp.add_pipe("cxr_targets")
    # A comma then a size or side word starts a new finding: "No pneumothorax, small left effusion."
    breaks = {"termination": [f", {w}" for w in vocab.SCOPE_BREAK_AFTER_COMMA]}
    clinical = termset("en_clinical").get_patterns()
    negation = _termset(_termset(clinical, vocab.NEGATION_ADD, vocab.NEGATION_DROP), breaks)
    # Hedges and history share only NegEx's scope ends ("but", "however") with the negation termset.
    ends = {"termination": clinical["termination"]}
    for name, terms in (
        ("negex", negation),
        ("hedged", _termset(_termset(ends, vocab.HEDGE), breaks)),
        ("historical", _termset(_termset(ends, vocab.HISTORY), breaks)),
    ):
        config = {"neg_termset": terms, "extension_name": name}
        nlp.add_pipe("negex", name=f"negex_{name}", config=config)
    return nlp


_SECTION_HEAD = re.compile(
    "|".join(
        rf"(?P<{cat}_{i}>(?:^|(?<=[\s.]))(?i:{h})\s*:|^[ \t]*(?i:{h})[ \t]*$)"
        for cat, heads in vocab.SECTIONS.items()
        for i, h in enumerate(sorted(heads, key=len, reverse=True))
    ),
    re.MULTILINE,
)


def _sections(text: str) -> tuple[list[int], list[str]]:
    """Section starts (character offsets, ascending) and their categories (labeler_vocab.SECTIONS keys).
    A header is a SECTIONS name followed by ":" anywhere, or alone on its line (any case); text before
    the first header belongs to no section."""
    found = [(m.start(), (m.lastgroup or "").rsplit("_", 1)[0]) for m in _SECTION_HEAD.finditer(text)]
    return [s for s, _ in found], [c for _, c in found]


def _section_at(sections: tuple[list[int], list[str]], char: int) -> str | None:
    starts, cats = sections
    i = bisect.bisect_right(starts, char)
    return cats[i - 1] if i else None


def _state(ent, section: str | None) -> str:
    """A target entity's state after the three Negex components ran (see the module docstring)."""
    kind = ent.label_.split("_", 1)[0]
    if ent._.historical or section in _HISTORY_SECTIONS:
        return "history"
    if kind == "n" or ent._.negex:
        return "absent"
    return "uncertain" if ent._.hedged else "present"


def _label_of(ent) -> str:
    return ent.label_.split("_")[1]


def mentions(text: str) -> list[Mention]:
    """Every finding mention in `text`, in order, with its state and its describing context."""
    # A "?" written onto a word ("?PTX", "?small effusion") is a query: a hedge, not the end of a sentence.
    # The same-length mark keeps every character offset (sections) where it was.
    text = _QUERY.sub(vocab.QUERY_MARK, text)
    # The period of "consol. right upper lobe" shortens a word; it ends no sentence (a space keeps offsets).
    text = _ABBREVIATION_DOT.sub(r"\1 ", text)
    doc = _nlp()(text)
    sections = _sections(text)
    out: list[Mention] = []
    for sent in doc.sents:
        ents = [e for e in doc.ents if sent.start <= e.start < sent.end]
        low = sent.text.lower()
        for i, ent in enumerate(ents):
            s, e = ent.start_char - sent.start_char, ent.end_char - sent.start_char
            # Adjectives come before the noun ("small left pleural effusion"), prepositional phrases after
            # it ("consolidation in the right lower zone"); a conjunction between two mentions hands the
            # rest of the gap to the second one.
            prev_end = ents[i - 1].end_char - sent.start_char if i else 0
            before = low[prev_end:s]
            conj = list(_CONJ.finditer(before)) if i else []
            before = before[conj[-1].end() :] if conj else before
            nxt = ents[i + 1].start_char - sent.start_char if i + 1 < len(ents) else len(low)
            after = low[e:nxt]
            cut = _CONJ.search(after)
            after = after[: cut.start()] if cut else after
            state = _state(ent, _section_at(sections, ent.start_char))
            context = f"{before} {low[s:e]} {after}"
            label = _label_of(ent)
            out.append(Mention(label, state != "present", context, state))
            if low[s:e].startswith("hydropneumo"):  # fluid and air: one word, two findings
                out.append(Mention("pneumothorax", state != "present", context, state))
    return out


def _states(found: list[Mention]) -> dict[str, str]:
    by_label: dict[str, set[str]] = {lab: set() for lab in LABELS}
    for m in found:
        by_label[m.label].add(m.state)
    return {
        lab: next((s for s in ("present", "uncertain", "absent") if s in got), "none")
        for lab, got in by_label.items()
    }


def label_states(text: str) -> dict[str, str]:
    """State of each finding in LABELS order: "present" / "absent" / "uncertain" / "none" (not mentioned)."""
    return _states(mentions(text))


def mentioned_labels(text: str) -> list[str]:
    """Labels mentioned at all (whatever their state), in LABELS order."""
    seen = {m.label for m in mentions(text)}
    return [lab for lab in LABELS if lab in seen]


def label_report(text: str) -> dict[str, bool]:
    """Presence of each finding in LABELS order, read from free text (hedged mentions are not presence)."""
    return _presence(mentions(text))


def label_verdicts(text: str) -> dict[str, bool | None]:
    """Each finding in LABELS order: True present, None uncertain (hedged only), False absent or unmentioned."""
    return verdicts(label_states(text))


def verdicts(states: dict[str, str]) -> dict[str, bool | None]:
    """label_states' output as True (present) / None (uncertain) / False (absent or not mentioned)."""
    return {lab: True if s == "present" else None if s == "uncertain" else False for lab, s in states.items()}


def _presence(found: list[Mention]) -> dict[str, bool]:
    return {lab: s == "present" for lab, s in _states(found).items()}


def _side(contexts: list[str]) -> str | None:
    words = {_SIDE_WORD.get(w, w) for c in contexts for w in _SIDE.findall(c)}
    if (
        words & {"bilateral", "bilaterally", "bilat", "both", "bibasilar", "bibasal"}
        or {"left", "right"} <= words
    ):
        return "bilateral"
    return next((s for s in ("left", "right") if s in words), None)


def _size(contexts: list[str]) -> str | None:
    for c in contexts:
        for w in _SIZE.findall(c):
            return "small" if w in vocab.SIZE_SMALL else "large"
    return None


def _zone(contexts: list[str]) -> str | None:
    for c in contexts:
        for m in _ZONE.finditer(c):
            if m.group(1):
                level = _ZONE_WORD.get(m.group(2))
                side = _SIDE_WORD.get(m.group(1), m.group(1))
                return f"{side} {level}" if level else None  # the middle lobe is no zone of ours
            if m.group(3):
                return _ABBREV.get(m.group(3))
            return "left upper"  # the lingula belongs to the left upper lobe
    return None


def label_details(text: str) -> dict[str, str | None]:
    """Attributes of positive findings: effusion_side / effusion_size / pneumothorax_side /
    consolidation_zone. "none" when the finding is not present, None when present but not stated."""
    return _details(mentions(text))


def read(text: str) -> tuple[dict[str, bool], dict[str, str | None]]:
    """(label_report(text), label_details(text)) from one pass over the text's mentions."""
    found = mentions(text)
    return _presence(found), _details(found)


def read_states(text: str) -> tuple[dict[str, str], dict[str, str | None]]:
    """(label_states(text), label_details(text)) from one pass over the text's mentions."""
    found = mentions(text)
    return _states(found), _details(found)


def _details(found: list[Mention]) -> dict[str, str | None]:
    ctx: dict[str, list[str]] = {lab: [] for lab in LABELS}
    for m in found:
        if m.state == "present":
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
