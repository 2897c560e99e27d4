"""Text written from phantom findings: reports, findings prompts, VQA pairs and declined plain instructions.

The vocabulary is deliberately small (a tiny tokenizer is trained on it) and every sentence is one the
rule-based labeler (`labeler.py`) reads back exactly; the tests check that on thousands of seeds.
Sides are the patient's (see `phantoms.py` for the image convention).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from llmcxr_app.demo.data.findings import Findings
from llmcxr_app.studio import template_text
from llmcxr_app.studio.template_text import QUESTIONS  # the VQA pool; re-exported for the generator's users

DECLINES = (
    "I am a demo model trained only on synthetic chest X-ray phantoms, so I cannot answer general questions. "
    "Please attach a chest X-ray or describe findings to draw one.",
    "I am a demo model trained only on synthetic chest X-ray phantoms, so I cannot help with that. "
    "Please attach a chest X-ray or describe findings to draw one.",
    "Sorry, I am a demo model trained only on synthetic chest X-ray phantoms and cannot answer general "
    "questions. Please attach a chest X-ray or describe findings to draw one.",
)

PLAIN_QUESTIONS = (
    "What is deep learning?",
    "Write a poem about the sea.",
    "What is the capital of France?",
    "Explain what a chest X-ray shows.",
    "Tell me a joke.",
    "How do I bake bread?",
    "Translate good morning into Spanish.",
    "Who wrote Hamlet?",
    "What is the weather like today?",
    "Summarize the history of the Roman Empire.",
    "Write a Python function that sorts a list.",
    "What is the boiling point of water?",
    "Give me three tips for better sleep.",
    "What is a transformer model?",
    "How many planets are in the solar system?",
    "Recommend a good book to read.",
    "What should I eat for dinner?",
    "Explain quantum computing in simple terms.",
    "What is the treatment for pneumonia?",
    "How does a CT scanner work?",
    "Write a short story about a dragon.",
    "What is the meaning of life?",
    "Can you help me with my homework?",
    "What is two plus two?",
    "Describe the rules of chess.",
    "Who are you?",
    "What is the difference between a virus and a bacterium?",
    "How do I reset my password?",
    "Write an email to my manager asking for a day off.",
    "What year did the Second World War end?",
    "Name the largest ocean on Earth.",
    "How do vaccines work?",
)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


class _RandomWording:
    """The generator's choices (template_text.Chooser): each wording and optional sentence drawn with rng."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, options: Sequence[str]) -> str:
        return _pick(self.rng, options)

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)


def write_report(findings: Findings, rng: np.random.Generator) -> str:
    """A short report "FINDINGS: ... IMPRESSION: ..." (~25-70 words) with explicit negatives, each wording
    picked with `rng` (studio/template_text.py writes it), so a seed gives one report."""
    return template_text.report(findings.label_vector(), findings.attributes(), _RandomWording(rng))


def findings_phrases(findings: Findings) -> list[str]:
    """One short positive phrase per finding, e.g. ["Large right pleural effusion.", "Pacemaker."]."""
    return template_text.phrases(findings.label_vector(), findings.attributes())


def write_findings_prompt(findings: Findings, rng: np.random.Generator) -> str:
    """What a user might type to ask for an image: a short list of findings, or (30%) a full report."""
    if rng.random() < 0.3:
        return write_report(findings, rng)
    phrases = findings_phrases(findings)
    if not phrases:
        return _pick(rng, ("Normal chest X-ray.", "No acute cardiopulmonary abnormality.", "Normal study."))
    order = rng.permutation(len(phrases))
    return " ".join(phrases[i] for i in order)


QUESTION_KINDS = {re.sub(r"\s+", " ", q.lower()).strip(): (kind, label) for q, kind, label in QUESTIONS}
_NAMES = {
    "effusion": "pleural effusion",
    "pneumothorax": "pneumothorax",
    "consolidation": "consolidation",
}


def answer(kind: str, label: str, f: Findings) -> str:
    """The true answer to a question of `kind` (QUESTIONS' second field) about `label` for findings `f`."""
    present = f.label_vector().get(label, False)
    if kind == "presence":
        return "Yes." if present else "No."
    if kind == "heart":
        return "Enlarged." if f.cardiomegaly else "Normal."
    if kind == "devices":
        devs = [n for n, on in (("Endotracheal tube", f.ett), ("pacemaker", f.pacemaker)) if on]
        return template_text.cap(" and ".join(devs)) + "." if devs else "None."
    if not present:
        return f"There is no {_NAMES[label]}."
    if kind == "side":
        return template_text.cap(f.effusion if label == "effusion" else f.pneumothorax) + "."
    if kind == "size":
        return template_text.cap(f.effusion_size) + "."
    return f"{template_text.cap(f.consolidation)} zone."  # zone


def make_qa(findings: Findings, rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """n (question, answer) pairs about `findings`, half about present and half about absent findings."""
    present = [lab for lab, on in findings.label_vector().items() if on]
    absent = [lab for lab, on in findings.label_vector().items() if not on]
    out: list[tuple[str, str]] = []
    for i in range(n):
        if rng.random() < 0.12:  # open questions whose answer depends on the whole image
            q = _pick(rng, [q for q, k, _ in QUESTIONS if k in ("heart", "devices")])
        else:
            want_present = (i % 2 == 0) if present and absent else bool(present)
            label = _pick(rng, present if want_present else absent)
            q = _pick(rng, [q for q, k, lab in QUESTIONS if lab == label and k != "heart"])
        out.append((q, answer(*QUESTION_KINDS[q.lower()], findings)))
    return out


def plain_instructions(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """n (instruction, polite decline) pairs without an image; distinct instructions while the pool lasts."""
    order = rng.permutation(len(PLAIN_QUESTIONS))
    return [(PLAIN_QUESTIONS[order[i % len(order)]], _pick(rng, DECLINES)) for i in range(n)]
