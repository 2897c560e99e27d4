"""How the app reads a findings text: the labeler's findings, and the template report that states them.

A user writes findings in their own words ("Massive R effusion, no PTX."). The labeler (labeler.py) reads
which of its seven findings the text states as present, hedged or negated, and their side, size and zone.
That reading is shown to the user beside every drawing ("read as: large right pleural effusion"), so they
can see what was understood; the Draw self-check compares a drawing's read-back with the same reading.

A model whose checkpoint says it learned to draw from the template language (config.json
``"llmcxr_draw_prompt": "canonical"``: the embedded demo model, which never saw clinicians' wording) is
given `canonical_text(reading)` instead of the user's words: the template report (template_text.py) of
the findings read, with the first wording of every sentence, so it draws what was understood in the words
it knows. A finding that is only hedged ("possible effusion") is not drawn. Models trained on real reports
(the official LLM-CXR) get the text as typed.

Questions likewise: a checkpoint with ``"llmcxr_question_prompt": "canonical"`` is asked the template
question (template_text.QUESTIONS) that asks what `read_question` reads, when it reads one safely.
Pure functions; no model, no files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmcxr_app.studio import template_text
from llmcxr_app.studio.labeler import LABELS, mentioned_labels, parse_answer, read_states

NOTHING_READ = "no finding the model draws (a normal chest)"  # summary of a reading with nothing present


@dataclass(frozen=True)
class FindingsReading:
    """The labeler's reading of one findings text."""

    states: dict[str, str]  # label -> "present" | "absent" | "uncertain" | "none" (labeler.STATES)
    attributes: dict[str, str | None]  # effusion_side/_size, pneumothorax_side, consolidation_zone (labeler)

    @property
    def present(self) -> dict[str, bool]:
        """Each label in LABELS order: stated as present (a hedged finding is not)."""
        return {lab: self.states[lab] == "present" for lab in LABELS}

    @property
    def hedged(self) -> tuple[str, ...]:
        """Labels only hedged ("possible effusion"): uncertain, so not drawn."""
        return tuple(lab for lab in LABELS if self.states[lab] == "uncertain")

    def summary(self) -> str:
        """One line for the user: "large right pleural effusion, cardiomegaly; hedged, not drawn: pneumothorax"."""
        found = [template_text.describe(lab, self.attributes) for lab, on in self.present.items() if on]
        text = ", ".join(found) or NOTHING_READ
        if self.hedged:
            text += "; hedged, not drawn: " + ", ".join(
                template_text.describe(lab, {}) for lab in self.hedged
            )
        return text


def read_findings(text: str) -> FindingsReading:
    """The labeler's reading of ``text`` (one pass over its mentions)."""
    states, attributes = read_states(text)
    return FindingsReading(states=states, attributes=attributes)


def canonical_text(reading: FindingsReading) -> str:
    """The template report of the findings read (template_text.report with its first wordings)."""
    return template_text.report(reading.present, reading.attributes, template_text.FIRST)


# What a question asks about a finding, beyond whether it is there (lower-cased question text).
_SIDE_ASKED = re.compile(
    r"\b(?:which|what)\s+side\b|\bleft\s+or\s+(?:the\s+)?right\b|\bright\s+or\s+(?:the\s+)?left\b"
    r"|\b[rl]\s+or\s+[rl]\b|\bside\b|\bwhich\s+(?:ha?emithorax|lung)\b|\bwhere\b|\blaterality\b"
)
# A yes/no question that names a side, size or zone ("Is the effusion on the left?") is asked as the
# side / size / zone question: its answer names the value, which answers the yes/no (a template presence
# question would answer "yes" to a right effusion).
_SIDE_NAMED = re.compile(r"\b(?:left|right|l|r|bilateral|bilat|both)\b")
_SIZE_NAMED = re.compile(r"\b(?:small|large|big|massive|moderate|tiny|trace|huge|minimal)\b")
_ZONE_NAMED = re.compile(r"\b(?:upper|lower|base|basal|apex|apical|rul|rll|lul|lll|lingula|lingular)\b")
_SIZE_ASKED = re.compile(r"\bhow\s+(?:big|large|much|extensive)\b|\bsize\b|\bsmall\s+or\s+(?:large|big)\b")
_ZONE_ASKED = re.compile(r"\bwhere\b|\bwhich\s+(?:zone|lobe|part|area)\b|\blocation\b|\bzone\b|\blobe\b")
# A question whose "yes" means the finding is absent ("Is the heart size normal?", "No PTX?", "Can an
# effusion be excluded?"): asked as the presence question, and the app gives the opposite yes / no.
_ABSENCE_ASKED = re.compile(
    r"\bnormal\b|\bclear\b(?!\s+(?:evidence|signs?|indication))|\bangles?\b.*\bsharp\b|\bfree\s+of\b"
    r"|\bunremarkable\b"
    r"|\bexclud\w*|\bruled?\s+out\b|\babsent\b|\bextubated\b|^no\b|\bthere\s+no\b"
    r"|\bnot\s+(?:enlarged|present|seen|visible|there)\b"
)
# Asked of a named finding, these also mean "is it gone?" ("Has the effusion resolved?", "Has the ETT
# been removed?", "Is the lung fully re-expanded?"). Without a finding named ("Has the tube been
# removed?") they are left to the devices question.
_GONE_ASKED = re.compile(
    r"\bresolv\w*|\bremoved\b|\bno\s+longer\b|\bcleared\b|\bfully\s+expanded\b|\bre-?expanded\b"
    r"|\bgone\b|\blungs?\s+(?:\w+\s+)?(?:fully\s+)?up\b"
)
_HEART_SIZE = re.compile(r"\b(?:heart|cardiac)\s+size\b|\bsize\s+of\s+the\s+heart\b")
_DEVICES = re.compile(r"(?<!pleural\s)\blines?\b|\b(?:tubes?|devices?|hardware)\b")
# Lay and loose names a question may use that a report would not (where "opacity" or "collapse" could
# mean other things): read in questions only, after the labeler's own vocabulary.
_QUESTION_NAMES = {
    "pneumothorax": re.compile(
        r"\bcollapsed\s+(?:right\s+|left\s+)?lung\b|\blungs?\b.*\b(?:fully\s+expanded|re-?expanded)\b"
        r"|\bair\s+in\s+the\s+pleural\s+(?:space|cavity)\b|\bpleural\s+air\b|\b(?:visceral\s+)?pleural\s+line\b"
        r"|\blungs?\s+(?:\w+\s+)?(?:fully\s+)?up\b"  # "Is the lung fully up?" (re-expanded)
    ),
    "ett": re.compile(r"\bbreathing\s+tube\b|\btube\s+in\s+the\s+(?:trachea|windpipe)\b|\bextubated\b"),
    "pacemaker": re.compile(r"\bcardiac\s+device\b|\bpacing\s+device\b"),
    "consolidation": re.compile(  # "lungs clear?"; infection on a radiograph is airspace consolidation
        r"\bopacit(?:y|ies)\b|\blungs?\s+(?:are\s+|is\s+)?clear\b|\binfect(?:ion|ive|ed)\b"
    ),
    "cardiomegaly": re.compile(r"\bctr\b|\bcardiothoracic\s+ratio\b"),
    "edema": re.compile(
        r"\bpulmonary\s+vasculature\b|\b(?:heart|cardiac)\s+failure\b|\bevidence\s+of\s+failure\b"
        r"|\bfluid\s+(?:overload|in\s+the\s+lungs?)\b"
    ),
    # "fluid" alone is pleural fluid; fluid overload and fluid in the lungs are oedema (above)
    "effusion": re.compile(r"\bfluid\b(?!\s+(?:overload|in\s+the\s+lungs?))|\bmeniscus\b"),
}


@dataclass(frozen=True)
class QuestionReading:
    """What a question about an X-ray asks, as the template VQA pool's kinds name it."""

    kind: str  # "presence" | "absence" | "side" | "size" | "zone" | "heart" | "devices"
    label: str  # the finding asked about (LABELS), "devices" for kind "devices"

    @property
    def opposite(self) -> bool:
        """The question's yes means absent: its answer is the opposite of the template question's."""
        return self.kind == "absence"

    @property
    def canonical(self) -> str:
        """The template question asked (template_text.canonical_question): for an absence question, the
        presence question about the same finding."""
        return template_text.canonical_question("presence" if self.opposite else self.kind, self.label)


def _kind_of(label: str, q: str) -> str:
    """The kind of a question about one finding: its side, size or zone when asked, else presence."""
    sided = label in ("effusion", "pneumothorax")
    if sided and _SIDE_ASKED.search(q) and not _SIZE_ASKED.search(q):
        return "side"
    if label == "effusion" and _SIZE_ASKED.search(q):
        return "size"
    if label == "consolidation" and (_ZONE_ASKED.search(q) or _ZONE_NAMED.search(q)):
        return "zone"
    if sided and _SIDE_NAMED.search(q):
        return "side"
    if label == "effusion" and _SIZE_NAMED.search(q):
        return "size"
    return "presence"


def read_question(text: str) -> QuestionReading | None:
    """What ``text`` asks in the template kinds, or None when it cannot be said safely (then the model
    gets the question as typed): several findings in one question, or none of the seven. A question
    whose yes means the finding is absent ("Is the heart size normal?") is kind "absence"."""
    q = " ".join(text.lower().split())
    labels = mentioned_labels(text) or [lab for lab, name in _QUESTION_NAMES.items() if name.search(q)]
    if len(labels) > 1:
        return None
    if labels and (_ABSENCE_ASKED.search(q) or _GONE_ASKED.search(q)):
        return QuestionReading("absence", labels[0])
    if labels:
        return QuestionReading(_kind_of(labels[0], q), labels[0])
    if _ABSENCE_ASKED.search(q):
        return None
    if _HEART_SIZE.search(q):
        return QuestionReading("heart", "cardiomegaly")
    if _DEVICES.search(q):
        return QuestionReading("devices", "devices")
    if re.search(r"\bwhich\s+(?:lobe|zone)\b", q):  # only a consolidation has a lobe or zone here
        return QuestionReading("zone", "consolidation")
    return None


def opposite_answer(reply: str) -> str | None:
    """The answer to an absence question from the model's reply to its presence question: "Yes." for a
    no, "No." for a yes; None when the reply is no clear yes or no (labeler.parse_answer)."""
    return {"yes": "No.", "no": "Yes."}.get(parse_answer(reply))
