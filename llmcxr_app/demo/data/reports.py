"""Text written from phantom findings: reports, findings prompts, VQA pairs and declined plain instructions.

The vocabulary is deliberately small (a tiny tokenizer is trained on it) and every sentence is one the
rule-based labeler (`labeler.py`) reads back exactly; the tests check that on thousands of seeds.
Sides are the patient's (see `phantoms.py` for the image convention).
"""

from __future__ import annotations

import re

import numpy as np

from llmcxr_app.demo.data.findings import Findings

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


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _effusion_phrase(f: Findings) -> str:
    """e.g. "small right pleural effusion" / "large bilateral pleural effusions"."""
    plural = "s" if f.effusion == "bilateral" else ""
    return f"{f.effusion_size} {f.effusion} pleural effusion{plural}"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


_ETT = (
    "Endotracheal tube tip terminates above the carina.",
    "An endotracheal tube is in place with the tip above the carina.",
    "The endotracheal tube ends above the carina.",
)
_PACEMAKER = (
    "Left chest wall pacemaker with lead in the right ventricle.",
    "A left-sided pacemaker is present with its lead in the right ventricle.",
    "Pacemaker over the left chest with a single lead in the right ventricle.",
)
_HEART_ENLARGED = (
    "The heart is enlarged.",
    "Cardiomegaly is present.",
    "The cardiac silhouette is enlarged.",
)
_HEART_NORMAL = ("Heart size is normal.", "The heart is normal in size.", "Normal heart size.")
_MEDIASTINUM = (
    "Mediastinal contours are normal.",
    "The mediastinum is not widened.",
    "Normal mediastinal contours.",
)
_EDEMA = (
    "Bilateral perihilar haziness with Kerley lines, consistent with pulmonary edema.",
    "There is pulmonary edema with perihilar haze.",
    "Perihilar haze and Kerley lines indicate pulmonary edema.",
)
_LUNGS_CLEAR = (
    "The lungs are clear.",
    "Lungs are clear without focal consolidation.",
    "No focal consolidation or pulmonary edema.",
    "There is no consolidation or edema.",
)
_NO_PLEURAL = (
    "No pleural effusion or pneumothorax.",
    "There is no pleural effusion or pneumothorax.",
    "No effusion or pneumothorax is seen.",
)
_BONES = ("The osseous structures are unremarkable.", "No acute osseous abnormality.")


def _devices_and_heart(f: Findings, rng: np.random.Generator) -> list[str]:
    out = [_pick(rng, _ETT)] if f.ett else []
    if f.pacemaker:
        out.append(_pick(rng, _PACEMAKER))
    out.append(_pick(rng, _HEART_ENLARGED if f.cardiomegaly else _HEART_NORMAL))
    out.append(_pick(rng, _MEDIASTINUM))
    return out


def _lungs(f: Findings, rng: np.random.Generator) -> list[str]:
    out = []
    if f.consolidation != "none":
        z = f.consolidation
        out.append(
            _pick(
                rng,
                (
                    f"There is consolidation in the {z} zone.",
                    f"Focal consolidation in the {z} zone.",
                    f"{_cap(z)} zone consolidation is present.",
                ),
            )
        )
    if f.edema:
        out.append(_pick(rng, _EDEMA))
    if f.consolidation == "none" and not f.edema:
        out.append(_pick(rng, _LUNGS_CLEAR))
    elif f.consolidation == "none" and rng.random() < 0.6:
        out.append(_pick(rng, ("No focal consolidation.", "There is no focal consolidation.")))
    elif not f.edema and rng.random() < 0.6:
        out.append(_pick(rng, ("No pulmonary edema.", "There is no pulmonary edema.")))
    return out


def _pleura(f: Findings, rng: np.random.Generator) -> list[str]:
    out = []
    if f.effusion != "none":
        e = _effusion_phrase(f)
        there = f"There are {e}." if f.effusion == "bilateral" else f"There is a {e}."
        out.append(_pick(rng, (f"{_cap(e)}.", there)))
    if f.pneumothorax != "none":
        p = f.pneumothorax
        out.append(
            _pick(
                rng,
                (
                    f"{_cap(p)} pneumothorax with a visible pleural line.",
                    f"There is a {p} pneumothorax.",
                    f"A {p}-sided pneumothorax is present.",
                ),
            )
        )
    if f.effusion == "none" and f.pneumothorax == "none":
        out.append(_pick(rng, _NO_PLEURAL))
    elif f.effusion == "none":
        out.append(_pick(rng, ("No pleural effusion.", "There is no pleural effusion.")))
    elif f.pneumothorax == "none":
        out.append(_pick(rng, ("No pneumothorax.", "There is no pneumothorax.")))
    return out


def write_report(findings: Findings, rng: np.random.Generator) -> str:
    """A short report "FINDINGS: ... IMPRESSION: ..." (~25-70 words) with explicit negatives.

    Sentences come in a fixed order (devices, heart, mediastinum, lungs, pleura, bones), each picked with
    `rng`, so a seed gives one report.
    """
    out = [*_devices_and_heart(findings, rng), *_lungs(findings, rng), *_pleura(findings, rng)]
    if rng.random() < 0.5:
        out.append(_pick(rng, _BONES))
    return f"FINDINGS: {' '.join(out)} IMPRESSION: {_impression(findings, rng)}"


def _impression(f: Findings, rng: np.random.Generator) -> str:
    items: list[str] = []
    if f.effusion != "none":
        items.append(_cap(_effusion_phrase(f)) + ".")
    if f.pneumothorax != "none":
        items.append(f"{_cap(f.pneumothorax)} pneumothorax.")
    if f.consolidation != "none":
        items.append(f"{_cap(f.consolidation)} zone consolidation.")
    if f.edema:
        items.append("Pulmonary edema.")
    if f.cardiomegaly:
        items.append("Cardiomegaly.")
    if not items:
        items.append(
            _pick(rng, ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality."))
        )
    if f.ett or f.pacemaker:
        items.append(_pick(rng, ("Support devices as described.", "Support devices in place.")))
    return " ".join(items)


def findings_phrases(findings: Findings) -> list[str]:
    """One short positive phrase per finding, e.g. ["Large right pleural effusion.", "Pacemaker."]."""
    f = findings
    out: list[str] = []
    if f.cardiomegaly:
        out.append("Cardiomegaly.")
    if f.effusion != "none":
        out.append(_cap(_effusion_phrase(f)) + ".")
    if f.pneumothorax != "none":
        out.append(f"{_cap(f.pneumothorax)} pneumothorax.")
    if f.consolidation != "none":
        out.append(f"{_cap(f.consolidation)} zone consolidation.")
    if f.edema:
        out.append("Pulmonary edema.")
    if f.ett:
        out.append("Endotracheal tube.")
    if f.pacemaker:
        out.append("Pacemaker.")
    return out


def write_findings_prompt(findings: Findings, rng: np.random.Generator) -> str:
    """What a user might type to ask for an image: a short list of findings, or (30%) a full report."""
    if rng.random() < 0.3:
        return write_report(findings, rng)
    phrases = findings_phrases(findings)
    if not phrases:
        return _pick(rng, ("Normal chest X-ray.", "No acute cardiopulmonary abnormality.", "Normal study."))
    order = rng.permutation(len(phrases))
    return " ".join(phrases[i] for i in order)


# The VQA pool: (question, kind, label). kind: presence | side | size | zone | heart | devices.
QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("Is there cardiomegaly?", "presence", "cardiomegaly"),
    ("Is the heart enlarged?", "presence", "cardiomegaly"),
    ("Does the patient have cardiomegaly?", "presence", "cardiomegaly"),
    ("Is there a pleural effusion?", "presence", "effusion"),
    ("Does the patient have a pleural effusion?", "presence", "effusion"),
    ("Is there any pleural fluid?", "presence", "effusion"),
    ("Is there a pneumothorax?", "presence", "pneumothorax"),
    ("Does the patient have a pneumothorax?", "presence", "pneumothorax"),
    ("Is there evidence of pneumothorax?", "presence", "pneumothorax"),
    ("Is there consolidation?", "presence", "consolidation"),
    ("Does the patient have consolidation?", "presence", "consolidation"),
    ("Is there any focal consolidation?", "presence", "consolidation"),
    ("Is there pulmonary edema?", "presence", "edema"),
    ("Does the patient have pulmonary edema?", "presence", "edema"),
    ("Are there signs of edema?", "presence", "edema"),
    ("Is there an endotracheal tube?", "presence", "ett"),
    ("Is the patient intubated?", "presence", "ett"),
    ("Is an endotracheal tube present?", "presence", "ett"),
    ("Is there a pacemaker?", "presence", "pacemaker"),
    ("Does the patient have a pacemaker?", "presence", "pacemaker"),
    ("Is a cardiac pacemaker present?", "presence", "pacemaker"),
    ("Which side is the pleural effusion on?", "side", "effusion"),
    ("On which side is the effusion?", "side", "effusion"),
    ("Which side is the pneumothorax on?", "side", "pneumothorax"),
    ("Where is the pneumothorax?", "side", "pneumothorax"),
    ("How large is the effusion?", "size", "effusion"),
    ("What is the size of the pleural effusion?", "size", "effusion"),
    ("Where is the consolidation?", "zone", "consolidation"),
    ("Which lung zone is consolidated?", "zone", "consolidation"),
    ("What is the heart size?", "heart", "cardiomegaly"),
    ("Which support devices are present?", "devices", "devices"),
)
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
        return _cap(" and ".join(devs)) + "." if devs else "None."
    if not present:
        return f"There is no {_NAMES[label]}."
    if kind == "side":
        return _cap(f.effusion if label == "effusion" else f.pneumothorax) + "."
    if kind == "size":
        return _cap(f.effusion_size) + "."
    return f"{_cap(f.consolidation)} zone."  # zone


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
