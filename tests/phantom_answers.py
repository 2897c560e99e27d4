"""The true answer to a free-form question about phantom findings: the tests' stand-in for a perfect model.

Not part of the app: the demo's VQA pool (reports.QUESTIONS) has its answers from reports.answer; this
reads close rephrasings of those questions too, which only the tests need.
"""

from __future__ import annotations

import re

from llmcxr_app.demo.data.findings import Findings
from llmcxr_app.demo.data.reports import QUESTION_KINDS, answer
from llmcxr_app.studio.labeler import mentioned_labels


def answer_for(question: str, findings: Findings) -> str | None:
    """Ground-truth answer to a question of the QA pool (or a close rephrasing), None if not understood."""
    key = re.sub(r"\s+", " ", question.lower()).strip()
    hit = QUESTION_KINDS.get(key)
    if hit is None:
        labels = mentioned_labels(key)
        if len(labels) != 1:
            return None
        label = labels[0]
        if re.match(r"(which|what) side|where|on which side", key) and label in ("effusion", "pneumothorax"):
            hit = ("side", label)
        elif re.match(r"where|which (lung )?zone|which lobe", key) and label == "consolidation":
            hit = ("zone", label)
        elif re.match(r"how (large|big)|what (is the )?size", key) and label == "effusion":
            hit = ("size", label)
        elif re.match(r"(is|are|does|do|has|have|can|any)\b", key):
            hit = ("presence", label)
        else:
            return None
    return answer(hit[0], hit[1], findings)
