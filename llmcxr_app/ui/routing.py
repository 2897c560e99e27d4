"""Which task a chat message asks for (the rules README.md's "Auto mode routing" states), and the findings
text of a draw request. Pure functions: no Gradio, no model."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmcxr_app.protocol import TASK_DRAW, TASK_INSTRUCT, TASK_REPORT, TASK_VQA
from llmcxr_app.studio.errors import StudioInputError
from llmcxr_app.studio.labeler import label_states
from llmcxr_app.studio.labeler_vocab import SECTIONS

MODES = ("Auto", "Report", "Ask", "Draw")
# Auto's answer when a pasted report meets a current X-ray: draw it, or ask about the X-ray? The app asks.
TASK_AMBIGUOUS = "ambiguous"
CHOICES = ("Draw these findings", "Ask about the current X-ray")  # the user's two answers, in that order
_HEADER = re.compile(r"^\W*(?:findings|impression|conclusion)\s*:", re.IGNORECASE | re.MULTILINE)
_QUESTION = re.compile(
    r"\?\s*$|^\W*(?:is|are|does|do|did|has|have|can|could|would|should|will|was|were|what|which|where|how|"
    r"why|when|who|any|tell|explain|please\s+(?:tell|explain))\b",
    re.IGNORECASE,
)

_VERB = r"(?:draw|generate|synthesi[sz]e|create|make|render|produce|simulate|show\s+me)"
_NOUN = r"(?:chest\s+)?(?:x-?\s?rays?|cxrs?|images?|radiographs?|films?|pictures?)"
# Only a few small words may stand between the verb and the noun, so "create a report for this image" is
# not a draw request while "generate a synthetic frontal chest X-ray" is.
_FILLER = r"(?:(?:me|us|a|an|the|one|two|three|four|some|new|synthetic|fake|sample|example|realistic|typical|frontal|pa|ap|corresponding|matching|plausible)\s+){0,4}"
_DRAW = re.compile(rf"\b{_VERB}\s+{_FILLER}{_NOUN}\b", re.IGNORECASE)
# What may join the command to the findings: "... X-ray of / with / showing / that shows / for: ..."
_JOIN = re.compile(
    r"^\s*(?:(?:of|with|showing|that\s+shows?|which\s+shows?|for|from|where|depicting|consistent\s+with|"
    r"matching|based\s+on|(?:for\s+)?(?:this|these|the\s+following)\s+(?:findings|report))\b\s*)*[:;,.\-–—]*\s*",
    re.IGNORECASE,
)
_POLITE = re.compile(r"(?:\b(?:please|can\s+you|could\s+you|would\s+you|kindly)\b[\s,]*)+$", re.IGNORECASE)
# Short requests for a report of the image ("Describe this X-ray", "Write a report", "Findings?").
_REPORT = re.compile(
    r"^\W*(?:please\s+)?(?:describe|report|read|interpret|write\s+(?:a|the)\s+report|findings|impression|"
    r"what\s+(?:are\s+the\s+findings|do\s+you\s+see))\b[\w\s,'-]{0,40}[.?!]*\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Route:
    """What to do with one message."""

    task: str  # protocol.TASK_REPORT / TASK_VQA / TASK_INSTRUCT / TASK_DRAW
    text: str  # the question (VQA, instruction) or findings (draw); "" for a report


_OTHER_HEADS = "|".join(
    sorted((h for cat in ("history", "comparison") for h in SECTIONS[cat]), key=len, reverse=True)
)
_FINDING_HEADS = "|".join(
    sorted((h for cat in ("findings", "impression") for h in SECTIONS[cat]), key=len, reverse=True)
)
# A HISTORY / INDICATION / COMPARISON / TECHNIQUE section, up to the next FINDINGS / IMPRESSION header.
_OTHER_SECTION = re.compile(
    rf"(?:^|(?<=[\s.]))(?:{_OTHER_HEADS})\s*:.*?(?=\b(?:{_FINDING_HEADS})\s*:|\Z)", re.IGNORECASE | re.DOTALL
)


def findings_only(text: str) -> str:
    """A pasted report without its HISTORY / INDICATION / COMPARISON / TECHNIQUE sections (the model draws
    from findings; it was never trained on those), or the text as it is when nothing else would be left."""
    kept = re.sub(r"\s+", " ", _OTHER_SECTION.sub(" ", text)).strip()
    return kept or text.strip()


def describes_findings(text: str) -> bool:
    """True when the text reads as findings rather than a question: a FINDINGS / IMPRESSION header, or a
    statement (not a question) in which the labeler reads a finding present, absent or hedged (a mention in
    the history or the study's question alone, "INDICATION: rule out pneumothorax", is not a finding)."""
    if _HEADER.search(text):
        return True
    if _QUESTION.search(text.strip()):
        return False
    return any(state != "none" for state in label_states(text).values())  # history-only mentions do not count


def is_draw_request(text: str) -> bool:
    """True when the text asks to draw/generate/synthesize/create... an X-ray/image/CXR."""
    return bool(_DRAW.search(text))


def findings_from_request(text: str) -> str:
    """The findings in a draw request: the text without its command ("Draw a chest X-ray with ...").

    Text before the command is kept too ("Large left effusion. Please generate the X-ray."). A text without a
    command is returned stripped, as it is (Draw mode sends findings alone).
    """
    m = _DRAW.search(text)
    if m is None:
        return text.strip()
    before = _POLITE.sub("", text[: m.start()]).strip(" \t\n,;:-–—")
    after = _JOIN.sub("", text[m.end() :], count=1).strip()
    after = re.sub(r"^(?:please)\W*$", "", after, flags=re.IGNORECASE)
    return " ".join(part for part in (before, after) if part).strip()


def route(mode: str, text: str, new_image: bool, has_image: bool) -> Route:
    """The task for a message.

    mode: one of MODES. text: the typed text (stripped). new_image: an image is attached to this message.
    has_image: an image is attached or a current X-ray is remembered from earlier in the conversation.

    Auto: a draw request (draw/generate/... + X-ray/image/CXR) -> Draw; an image with no text -> Report;
    a short report request ("Describe this X-ray") with an image -> Report; text that describes findings
    (describes_findings) -> Draw without an image, TASK_AMBIGUOUS with one (the app asks which is meant);
    any other text with an image -> Ask (VQA) about it; text without any image -> a plain instruction.
    Raises StudioInputError when there is nothing to answer.
    """
    text = text.strip()
    if mode not in MODES:
        raise StudioInputError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    if mode == "Draw":
        return Route(TASK_DRAW, findings_from_request(text))
    if mode == "Report":
        return Route(TASK_REPORT, "")
    if mode == "Ask":
        return Route(TASK_VQA if has_image else TASK_INSTRUCT, text)
    if text and is_draw_request(text):
        return Route(TASK_DRAW, findings_from_request(text))
    if not text:
        if new_image:
            return Route(TASK_REPORT, "")
        raise StudioInputError("The message is empty: type a question or findings, or attach a chest X-ray.")
    if has_image and _REPORT.match(text):
        return Route(TASK_REPORT, "")
    if describes_findings(text):
        return Route(TASK_AMBIGUOUS if has_image else TASK_DRAW, findings_only(text))
    return Route(TASK_VQA if has_image else TASK_INSTRUCT, text)


_TASK_MODE = {TASK_DRAW: "Draw", TASK_REPORT: "Report", TASK_VQA: "Ask", TASK_INSTRUCT: "Ask"}
REDO_PREFIX = "Redo as "  # a redo choice under an answer: "Redo as Draw"


def mode_label(mode: str, task: str) -> str:
    """The line an answer shows about how it was made, e.g. "Mode: Draw (auto)" or "Mode: Ask"."""
    name = _TASK_MODE[task] + (" (no X-ray)" if task == TASK_INSTRUCT else "")
    return f"Mode: {name}" + (" (auto)" if mode == "Auto" else "")


def redo_choices(task: str, has_image: bool, has_text: bool = True) -> list[str]:
    """The other modes an answer can be redone in: Draw and Ask need the text, Report an X-ray; never the
    mode just used."""
    modes = (["Draw", "Ask"] if has_text else []) + (["Report"] if has_image else [])
    return [REDO_PREFIX + m for m in modes if m != _TASK_MODE[task]]


def chosen_mode(choice: str) -> str:
    """The mode a clicked choice asks for: CHOICES (Auto's question) or a redo_choices entry."""
    if choice == CHOICES[0]:
        return "Draw"
    if choice == CHOICES[1]:
        return "Ask"
    if choice.startswith(REDO_PREFIX) and choice[len(REDO_PREFIX) :] in MODES:
        return choice[len(REDO_PREFIX) :]
    raise StudioInputError(f"Unknown choice {choice!r}.")
