"""Clinician-style text about phantom findings: draw requests, reports and VQA questions in many styles.

The template writer (reports.py) uses a small fixed vocabulary; this module writes what clinicians type:
synonyms and abbreviations per finding (PTX, eff., cardiomeg., ETT, PPM, RLL, "CP angle blunting",
"R>L"), sizes ("trace", "moderate", "apical rim 2 cm"), several findings per sentence, negation lists
("no focal consolidation, effusion or pneumothorax"), hedges, section headers (INDICATION / COMPARISON /
FINDINGS / IMPRESSION), terse 1-4 word prompts, British and American spelling, case and punctuation
variation and occasional typos. Every text is written from a phantom's `Findings` with a seeded rng.

Hedges name a finding the phantom does NOT have ("possible left effusion"): a hedged finding is uncertain,
so it is drawn as absent and never stated as present. The labeler is this module's test oracle only.
"""

from __future__ import annotations

import re

import numpy as np

from llmcxr_app.demo.data.findings import Findings

SMALL = ("small", "small", "trace", "tiny", "minimal", "small-volume")
LARGE = ("large", "large", "moderate", "massive", "big", "moderate-to-large", "sizeable", "large-volume")
SIDE_WORDS = {
    "right": ("right", "right", "R", "right-sided", "R-sided"),
    "left": ("left", "left", "L", "left-sided", "L-sided"),
}
BILATERAL = ("bilateral", "bilateral", "bilat", "bilateral R>L", "bilateral L>R", "both-sided")
EFFUSION_NOUN = ("pleural effusion", "pleural effusion", "effusion", "eff.", "pleural fluid", "effusion")
PTX_NOUN = ("pneumothorax", "pneumothorax", "PTX", "ptx", "pneumothorax", "PNX")
CONSOL_NOUN = (
    "consolidation",
    "consolidation",
    "airspace opacity",
    "consol.",
    "airspace disease",
    "pneumonia",
)
ZONE_ABBREV = {"right upper": "RUL", "right lower": "RLL", "left upper": "LUL", "left lower": "LLL"}
ZONE_WORDS = {
    "right upper": ("right upper zone", "right upper lobe", "R upper zone", "right apex", "RUL"),
    "right lower": ("right lower zone", "right lower lobe", "right base", "R base", "RLL"),
    "left upper": ("left upper zone", "left upper lobe", "L upper zone", "left apex", "LUL"),
    "left lower": ("left lower zone", "left lower lobe", "left base", "L base", "LLL"),
}
CARDIO = (
    "cardiomegaly",
    "cardiomegaly",
    "enlarged heart",
    "cardiomeg.",
    "enlarged cardiac silhouette",
    "cardiac enlargement",
    "moderate cardiomegaly",
    "massively enlarged cardiac silhouette",
    "cardiomegaly (CTR 0.6)",
    "big heart",
)
EDEMA = (
    "pulmonary edema",
    "pulmonary oedema",
    "interstitial edema",
    "interstitial oedema",
    "fluid overload",
    "pulmonary edema with Kerley B lines",
    "perihilar haze and Kerley lines",
    "alveolar oedema",
    "bat-wing oedema",
    "edema",
)
ETT = (
    "ETT",
    "ETT in situ",
    "endotracheal tube",
    "ET tube",
    "ETT, tip 4 cm above the carina",
    "endotracheal tube tip 5 cm above the carina",
    "intubated",
    "ETT in good position",
)
PPM = (
    "PPM",
    "pacemaker",
    "left chest wall pacemaker",
    "pacer",
    "single-lead pacemaker",
    "pacemaker with lead in the RV",
    "L sided PPM",
    "permanent pacemaker",
)
NORMAL = (
    "Normal chest X-ray.",
    "normal CXR",
    "NAD",
    "No acute cardiopulmonary process.",
    "Clear lungs, normal heart size.",
    "Unremarkable chest radiograph.",
    "normal",
    "Normal study, no acute findings.",
    "healthy chest",
    "Normal chest radiograph.",
)
REQUESTS = (
    "Draw a CXR with {}",
    "Generate a chest X-ray showing {}",
    "Show me {}",
    "Please create an image of {}",
    "CXR: {}",
    "Make a chest film with {}",
    "chest xray - {}",
    "Can you draw {}",
    "I need a PA chest radiograph with {}",
    "Produce a frontal chest radiograph: {}",
)
HEDGES = (
    "possible {}",
    "question of {}",
    "questionable {}",
    "cannot exclude {}",
    "{} cannot be excluded",
    "equivocal {}",
    "probable {}",
    "suspected {}",
    "{} not excluded",
    "may represent {}",
)
INDICATIONS = ("SOB", "fever and cough", "chest pain", "post intubation", "dyspnoea", "trauma", "pre-op")


def pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def end(s: str) -> str:
    """`s` as a sentence: one final period (abbreviations such as "eff." already end with one)."""
    return s if s.endswith(".") else s + "."


def _effusion(f: Findings, rng: np.random.Generator) -> str:
    size = pick(rng, SMALL if f.effusion_size == "small" else LARGE)
    noun = pick(rng, EFFUSION_NOUN)
    if f.effusion == "bilateral":
        plural = noun + ("s" if noun.endswith("effusion") else "")
        return f"{size} {pick(rng, BILATERAL)} {plural}"
    side = pick(rng, SIDE_WORDS[f.effusion])
    if f.effusion_size == "small" and rng.random() < 0.15:
        return f"blunting of the {side} CP angle (small effusion)"
    if f.effusion_size == "large" and rng.random() < 0.1:
        return f"large {side} effusion occupying the lower half of the hemithorax"
    return f"{size} {side} {noun}"


def _pneumothorax(f: Findings, rng: np.random.Generator) -> str:
    side, noun = pick(rng, SIDE_WORDS[f.pneumothorax]), pick(rng, PTX_NOUN)
    r = rng.random()
    if r < 0.15:
        return f"{side} apical {noun}, rim {int(rng.integers(1, 5))} cm"
    if r < 0.25:
        return f"{pick(rng, ('small', 'moderate', 'large'))} {side} {noun}"
    return f"{side} {noun}"


def _consolidation(f: Findings, rng: np.random.Generator) -> str:
    zone = f.consolidation
    if rng.random() < 0.25:
        return f"{ZONE_ABBREV[zone]} {pick(rng, CONSOL_NOUN)}"
    where = pick(rng, ZONE_WORDS[zone])
    noun = pick(rng, CONSOL_NOUN)
    return pick(rng, (f"{noun} in the {where}", f"{where} {noun}", f"dense {noun} {where}"))


def _phrase(label: str, f: Findings, rng: np.random.Generator) -> str:
    """One noun phrase for the present finding `label`."""
    if label == "effusion":
        return _effusion(f, rng)
    if label == "pneumothorax":
        return _pneumothorax(f, rng)
    if label == "consolidation":
        return _consolidation(f, rng)
    table = {"cardiomegaly": CARDIO, "edema": EDEMA, "ett": ETT, "pacemaker": PPM}
    return pick(rng, table[label])


def positive_phrases(f: Findings, rng: np.random.Generator, max_words: int = 0) -> list[str]:
    """One lower-case noun phrase per present finding, in a random order; every present finding is named.

    max_words > 0: phrases are drawn again (a few tries) until they have at most that many words.
    """
    out = []
    for label, on in f.label_vector().items():
        if not on:
            continue
        phrase = _phrase(label, f, rng)
        for _ in range(8):
            if not max_words or len(phrase.split()) <= max_words:
                break
            phrase = _phrase(label, f, rng)
        out.append(phrase)
    return [out[i] for i in rng.permutation(len(out))]


# Absent findings: (name in a negation list, a stand-alone negative sentence).
_ABSENT = {
    "cardiomegaly": (
        "cardiomegaly",
        ("Heart size normal.", "Normal cardiac silhouette.", "No cardiomegaly."),
    ),
    "effusion": ("effusion", ("No pleural effusion.", "No effusion.", "CP angles are sharp.")),
    "pneumothorax": ("pneumothorax", ("No pneumothorax.", "No PTX.", "No pneumothorax seen.")),
    "consolidation": (
        "focal consolidation",
        ("No focal consolidation.", "Lungs are clear.", "No consolidation."),
    ),
    "edema": ("pulmonary oedema", ("No pulmonary edema.", "No oedema.", "Normal pulmonary vasculature.")),
    "ett": ("endotracheal tube", ("No endotracheal tube.",)),
    "pacemaker": ("pacemaker", ("No pacemaker.",)),
}


def negatives(f: Findings, rng: np.random.Generator, k: int) -> list[str]:
    """Up to k statements about absent findings: a negation list, or one sentence each."""
    absent = [lab for lab, on in f.label_vector().items() if not on and lab not in ("ett", "pacemaker")]
    chosen = [absent[i] for i in rng.permutation(len(absent))[:k]]
    if not chosen:
        return []
    if len(chosen) >= 2 and rng.random() < 0.5:
        names = [_ABSENT[lab][0] for lab in chosen]
        joined = ", ".join(names[:-1]) + pick(rng, (" or ", ", or ", " or ")) + names[-1]
        return [
            pick(rng, ("No {}.", "There is no {}.", "No evidence of {}.", "Negative for {}.")).format(joined)
        ]
    return [pick(rng, _ABSENT[lab][1]) for lab in chosen]


def hedge(f: Findings, rng: np.random.Generator) -> tuple[str, str] | None:
    """(label, hedged phrase) about a finding the phantom does not have, or None when there is none to hedge."""
    candidates = [
        lab
        for lab, on in f.label_vector().items()
        if not on and lab in ("effusion", "pneumothorax", "consolidation")
    ]
    if not candidates:
        return None
    label = pick(rng, candidates)
    side = pick(rng, ("left", "right"))
    phrase = {
        "effusion": f"small {side} pleural effusion",
        "pneumothorax": f"small {side} apical pneumothorax",
        "consolidation": f"{side} basal consolidation",
    }[label]
    return label, pick(rng, HEDGES).format(phrase)


def _join(phrases: list[str], rng: np.random.Generator) -> str:
    """Several findings in one phrase: "a, b and c" / "a with b" / "a + b" / "a; b"."""
    if len(phrases) == 1:
        return phrases[0]
    style = rng.random()
    if style < 0.4:
        return ", ".join(phrases[:-1]) + " and " + phrases[-1]
    if style < 0.6:
        return phrases[0] + " with " + " and ".join(phrases[1:])
    if style < 0.8:
        return pick(rng, (" + ", ", ", " / ")).join(phrases)
    return "; ".join(phrases)


def _sentences(f: Findings, rng: np.random.Generator) -> list[str]:
    """Findings as clinician sentences: positives (several per sentence at times), then negatives, hedge."""
    pos = positive_phrases(f, rng)
    out: list[str] = []
    if pos and rng.random() < 0.5:
        out.append(end(cap(_join(pos, rng))))
    else:
        for p in pos:
            verb = pick(rng, ("{}", "There is {}.", "{} noted.", "{} present.", "{} is seen."))
            out.append(end(cap(verb.format(p))))
    if not pos:
        out.append(pick(rng, NORMAL))
    out += negatives(f, rng, int(rng.integers(0, 4)))
    h = hedge(f, rng) if rng.random() < 0.2 else None
    if h is not None:
        out.append(end(cap(h[1])))
    return out


def _impression(f: Findings, rng: np.random.Generator) -> str:
    """An impression that agrees with the findings (the same positives, or a normal statement)."""
    pos = positive_phrases(f, rng)
    if not pos:
        return pick(rng, ("No acute cardiopulmonary abnormality.", "Normal chest radiograph.", "NAD."))
    if rng.random() < 0.5:
        return " ".join(f"{i + 1}. {end(cap(p))}" for i, p in enumerate(pos))
    return end(cap(_join(pos, rng)))


def _header(name: str, rng: np.random.Generator, own_line: bool) -> str:
    """A section header; a header without a colon only when sections start on their own lines."""
    forms = (f"{name.upper()}: ", f"{cap(name.lower())}: ") + ((f"{name.upper()}\n",) if own_line else ())
    return pick(rng, forms)


def full_report(f: Findings, rng: np.random.Generator) -> str:
    """A report with some of INDICATION / COMPARISON / TECHNIQUE headers, then FINDINGS and IMPRESSION."""
    sep = pick(rng, ("\n", " ", "\n\n"))
    own = sep != " "
    parts = []
    if rng.random() < 0.5:
        parts.append(_header("indication", rng, own) + pick(rng, INDICATIONS) + ".")
    if rng.random() < 0.4:
        parts.append(_header("comparison", rng, own) + pick(rng, ("None.", "Prior film 2 days ago.", "none")))
    if rng.random() < 0.3:
        technique = pick(rng, ("PA and lateral.", "AP portable.", "Single AP view."))
        parts.append(_header("technique", rng, own) + technique)
    parts.append(_header("findings", rng, own) + " ".join(_sentences(f, rng)))
    head = pick(rng, ("impression", "impression", "conclusion"))
    parts.append(_header(head, rng, own) + _impression(f, rng))
    return sep.join(parts)


def terse(f: Findings, rng: np.random.Generator) -> str:
    """1-4 words per finding, joined: "R PTX", "large L eff + PPM", "cardiomegaly"."""
    pos = positive_phrases(f, rng, max_words=4)
    if not pos:
        return pick(rng, NORMAL)
    return pick(rng, (", ", " + ", " and ", "; ")).join(pos)


def request(f: Findings, rng: np.random.Generator) -> str:
    """A drawing request: "Draw a CXR with a large left effusion and no pneumothorax"."""
    pos = positive_phrases(f, rng)
    body = (
        _join(pos, rng) if pos else pick(rng, ("a normal chest", "no abnormality", "normal lungs and heart"))
    )
    if pos and rng.random() < 0.3:  # a negative tail only for what the phantom lacks
        tails = [", otherwise normal", ", nothing else"]
        tails += [", no pneumothorax"] if f.pneumothorax == "none" else []
        tails += [" and no effusion"] if f.effusion == "none" else []
        body += pick(rng, tails)
    return pick(rng, REQUESTS).format(body)


def surface(text: str, rng: np.random.Generator) -> str:
    """Case, punctuation and spelling variation and an occasional typo; the content is unchanged."""
    r = rng.random()
    if r < 0.15:
        text = text.lower()
    elif r < 0.22:
        text = text.upper()
    if rng.random() < 0.2:
        text = text.rstrip(".")
    if rng.random() < 0.3:  # one spelling throughout: British or American
        uk = rng.random() < 0.5
        for us, gb in (("edema", "oedema"), ("hemithorax", "haemithorax"), ("dyspnea", "dyspnoea")):
            text = re.sub(rf"\b(?:{gb}|{us})", gb if uk else us, text)
            text = re.sub(rf"\b(?:{gb}|{us})".upper(), (gb if uk else us).upper(), text)
    if rng.random() < 0.06:
        text = typo(text, rng)
    return text


# Words a typo never touches: a slip in a hedge or a negation cue would change what the text says.
_CUES = frozenset(
    w
    for h in (*HEDGES, "negative evidence without", "excluded exclude")
    for w in h.replace("{}", " ").split()
)


def typo(text: str, rng: np.random.Generator) -> str:
    """Swap two neighbouring letters inside one word of >= 6 letters (a keyboard slip), never a cue word."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha() and w.lower() not in _CUES]
    if not long:
        return text
    i = pick(rng, long)  # type: ignore[arg-type]
    w = words[int(i)]
    j = int(rng.integers(1, len(w) - 2))
    words[int(i)] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


STYLES = ("terse", "sentences", "request", "report")
_STYLE_P = (0.3, 0.3, 0.2, 0.2)


def findings_text(f: Findings, rng: np.random.Generator, style: str | None = None) -> str:
    """A findings text in one of STYLES (drawn at random unless given), with surface variation."""
    style = style or STYLES[int(rng.choice(len(STYLES), p=_STYLE_P))]
    if style == "terse":
        text = terse(f, rng)
    elif style == "sentences":
        text = " ".join(_sentences(f, rng))
    elif style == "request":
        text = request(f, rng)
    elif style == "report":
        text = full_report(f, rng)
    else:
        raise ValueError(f"unknown style {style!r}; use one of {STYLES}")
    return surface(text, rng)
