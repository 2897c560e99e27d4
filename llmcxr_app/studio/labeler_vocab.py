"""Vocabulary of the report labeler (labeler.py): how radiologists name the seven findings, how they say a
finding is normal, and the ConText cues (negation, hedging, indication, pseudo-negation) added to medspaCy's.

Written for this project from public sources read for facts (no list is copied verbatim):

- CheXpert labeler (Irvin et al., AAAI 2019; github.com/stanfordmlgroup/chexpert-labeler, phrases/mention/
  and phrases/unmention/): which words mention each observation ("pleural fluid", "effusion"; "vascular
  congestion", "pulmonary congestion", "chf" for edema; "cardiac silhouette", "heart size", "enlarged heart"
  for cardiomegaly; "consolidat-"); its NegBio-derived negation and uncertainty patterns ("clear of",
  "negative for", "cannot exclude", "may represent", "question of").
- NegEx (Chapman et al., J Biomed Inform 2001) and ConText (Harkema et al., J Biomed Inform 2009) trigger
  lists, as shipped in medspaCy's default English ConText rules, which labeler.py loads and extends here.
- RadLex (RSNA) preferred names and synonyms: "pleural effusion", "hydrothorax", "pneumothorax",
  "airspace disease", "consolidation", "pulmonary edema", "cardiomegaly", "cephalization", "Kerley B lines",
  "endotracheal tube", "cardiac pacemaker", "implantable cardioverter-defibrillator".
- Radiology reporting usage (Fleischner Society glossary, Hansell et al., Radiology 2008) for the wording
  of normal statements ("the lungs are clear", "costophrenic angles are sharp") and pseudo-negations
  ("no change in", "no interval change").
- Common report abbreviations and typos (PTX, CHF, ETT, NGT, ICD/AICD, "pnuemothorax", "effusoin").
Patterns are regular expressions over lower-cased text; word boundaries are added by the labeler.
"""

from __future__ import annotations

_SIZE_ADV = r"(?:(?:mildly|moderately|markedly|severely|slightly|massively|borderline|top[- ]normal)\s+)?"
_HEART = r"(?:heart(?:\s+size)?|cardiac\s+(?:silhouette|size|shadow|contour)|cardiomediastinal\s+silhouette)"
_VERB = r"(?:\s+(?:is|appears|remains|looks|are|was|has\s+become))?"

# Mentions per label. CheXpert's mention lists and RadLex synonyms; typos seen in dictated reports.
TARGETS: dict[str, tuple[str, ...]] = {
    "cardiomegaly": (
        r"cardiomegaly|cardiomegally|cardiac\s+enlargement|cardiomyopathy",  # CheXpert + RadLex
        rf"enlarged\s+{_HEART}|enlargement\s+of\s+the\s+{_HEART}",
        rf"(?:the\s+)?{_HEART}{_VERB}\s+{_SIZE_ADV}(?:enlarged|large|increased|prominent)",
        r"large\s+heart|(?:heart|cardiac)\s+is\s+large",
    ),
    "effusion": (
        r"(?<!pericardial\s)(?<!pericardial\s\s)(?:pleural\s+)?(?:effusions?|effusoin|efusion|effussion)",
        r"pleural\s+fluid|hydro-?(?:pneumo)?thorax|fluid\s+in\s+the\s+(?:pleural\s+space|(?:\w+\s+){0,2}fissure)",  # CheXpert + RadLex
        r"(?:costophrenic|cp)\s+angles?\s+(?:(?:is|are|appears?|remains?)\s+)?(?:\w+\s+)?blunt\w*",
        r"blunt\w*\s+(?:of\s+)?(?:the\s+)?(?:\w+\s+)?(?:costophrenic|cp)\s+angles?",
        r"layering\s+fluid|meniscus\s+sign",
    ),
    "pneumothorax": (
        r"pneumothora(?:x|ces)|pnuemothorax|pneumothroax|pneumothorx|ptx",  # RadLex + typos + abbreviation
        r"pleural\s+air(?:\s+collection)?|(?:apical|pleural)\s+air\s+collection",
        r"visceral\s+pleural\s+line|pleural\s+line\s+(?:is\s+)?(?:seen|visible)",
    ),
    "consolidation": (
        r"consolidat\w*|pneumonia|pneumonitis|infiltrates?|infiltration",  # CheXpert consolidation/pneumonia
        r"air\s*-?\s*space\s+(?:disease|opacit\w+|process|consolidation)",  # RadLex "airspace disease"
        r"focal\s+(?:opacit\w+|opacification)|lobar\s+opacit\w+|air\s+bronchograms?",
    ),
    "edema": (
        r"(?:pulmonary\s+|interstitial\s+|alveolar\s+)?o?edema|oedema",  # CheXpert "edema"
        r"(?:pulmonary\s+)?vascular\s+congestion|pulmonary\s+congestion|congestive\s+heart\s+failure|chf",
        r"cephali[sz]ation|kerley(?:\s+b)?\s+lines?|bat-?\s?wing|vascular\s+redistribution",  # RadLex
        r"fluid\s+overload|(?:pulmonary\s+)?venous\s+(?:hypertension|congestion)",
    ),
    "ett": (
        r"endotracheal(?:\s+tube)?|endo-tracheal\s+tube|et\s+tube|ett|intubated|intubation",
        r"tracheostomy\s+tube|trach\s+tube",
    ),
    "pacemaker": (
        r"pacemaker|pacer|pacing\s+(?:lead|wire|device|generator)s?|a?icd|defibrillator|cardioverter",
        r"(?:dual|single)[- ]chamber\s+(?:pacemaker|device)|transvenous\s+(?:leads?|pacing)",
    ),
}

# Statements that a finding is absent without a negation cue. Fleischner glossary wording; CheXpert's
# "unmention"-style normal phrases. "The lungs are clear" rules out focal consolidation, not pulmonary edema
# alone, so it is read for consolidation only.
NORMAL: dict[str, tuple[str, ...]] = {
    "cardiomegaly": (
        rf"(?:the\s+)?{_HEART}{_VERB}\s+(?:normal|within\s+normal\s+limits|unremarkable|stable\s+and\s+normal)",
        rf"normal\s+(?:{_HEART}|heart\s+size|cardiac\s+size)|{_HEART}{_VERB}\s+not\s+enlarged",
        r"heart\s+size\s+(?:and\s+(?:\w+\s+){1,2})?(?:is|are)\s+(?:normal|within\s+normal\s+limits)",
    ),
    "effusion": (
        r"(?:costophrenic|cp)\s+angles\s+(?:are\s+)?(?:sharp|clear|preserved)",
        r"(?:sharp|clear)\s+costophrenic\s+angles",
    ),
    "consolidation": (
        r"lungs\s+are\s+clear(?!\s+of)|clear\s+lungs|lungs\s+(?:are\s+)?well\s+expanded\s+and\s+clear",
    ),
    "edema": (r"normal\s+pulmonary\s+vasculature|pulmonary\s+vasculature\s+is\s+normal",),
}

# Extra ConText cues (literal, category, direction). medspaCy's default English rules (NegEx / ConText) are
# loaded first; these add what chest-film reports say, from CheXpert/NegBio's negation and uncertainty
# patterns and NegEx's post-negation and pseudo-negation triggers.
CONTEXT_CUES: tuple[tuple[str, str, str], ...] = (
    # Negation, before the finding ("No focal area of consolidation, pleural effusion, pneumothorax").
    ("no evidence of", "NEGATED_EXISTENCE", "FORWARD"),
    ("no definite", "NEGATED_EXISTENCE", "FORWARD"),
    ("no visible", "NEGATED_EXISTENCE", "FORWARD"),
    ("no focal", "NEGATED_EXISTENCE", "FORWARD"),
    ("no new", "NEGATED_EXISTENCE", "FORWARD"),
    ("nor", "NEGATED_EXISTENCE", "FORWARD"),
    ("resolution of", "NEGATED_EXISTENCE", "FORWARD"),
    ("removal of", "NEGATED_EXISTENCE", "FORWARD"),
    ("interval removal of", "NEGATED_EXISTENCE", "FORWARD"),
    ("resolving", "NEGATED_EXISTENCE", "FORWARD"),
    ("negative", "NEGATED_EXISTENCE", "FORWARD"),
    ("neg for", "NEGATED_EXISTENCE", "FORWARD"),
    # Negation, after the finding ("Pneumothorax has resolved", "ET tube removed", "effusion not seen").
    ("resolved", "NEGATED_EXISTENCE", "BACKWARD"),
    ("has resolved", "NEGATED_EXISTENCE", "BACKWARD"),
    ("have resolved", "NEGATED_EXISTENCE", "BACKWARD"),
    ("removed", "NEGATED_EXISTENCE", "BACKWARD"),
    ("has been removed", "NEGATED_EXISTENCE", "BACKWARD"),
    ("cleared", "NEGATED_EXISTENCE", "BACKWARD"),
    ("no longer", "NEGATED_EXISTENCE", "BACKWARD"),
    ("not seen", "NEGATED_EXISTENCE", "BACKWARD"),
    ("not identified", "NEGATED_EXISTENCE", "BACKWARD"),
    ("not visualized", "NEGATED_EXISTENCE", "BACKWARD"),
    ("not present", "NEGATED_EXISTENCE", "BACKWARD"),
    ("not demonstrated", "NEGATED_EXISTENCE", "BACKWARD"),
    ("is absent", "NEGATED_EXISTENCE", "BACKWARD"),
    ("are absent", "NEGATED_EXISTENCE", "BACKWARD"),
    ("absent", "NEGATED_EXISTENCE", "BACKWARD"),
    ("excluded", "NEGATED_EXISTENCE", "BACKWARD"),
    ("withdrawn", "NEGATED_EXISTENCE", "BACKWARD"),
    ("none", "NEGATED_EXISTENCE", "BACKWARD"),
    # Hedges (CheXpert/NegBio uncertainty): "may represent interstitial edema", "question of edema".
    ("may represent", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("may reflect", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("could represent", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("could reflect", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("may be", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("may have", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("question of", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("questionable", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("cannot exclude", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("can not exclude", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("cannot rule out", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("not excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("cannot be excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("can not be excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("not ruled out", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("cannot be ruled out", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("is possible", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("not entirely excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("probable", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("likely", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("versus", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL"),
    ("vs", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL"),
    ("suspected", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL"),
    ("concerning for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suggesting", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suggests", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("presumed", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("equivocal", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("borderline", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("borderline enlarged", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("not well evaluated", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("difficult to exclude", "POSSIBLE_EXISTENCE", "FORWARD"),
    # The reason for the study, not a finding of it: "evaluate for pneumothorax", "r/o pneumonia".
    ("evaluate for", "HYPOTHETICAL", "FORWARD"),
    ("evaluation for", "HYPOTHETICAL", "FORWARD"),
    ("eval for", "HYPOTHETICAL", "FORWARD"),
    ("assess for", "HYPOTHETICAL", "FORWARD"),
    ("assessment of", "HYPOTHETICAL", "FORWARD"),
    ("rule out", "HYPOTHETICAL", "FORWARD"),
    ("r/o", "HYPOTHETICAL", "FORWARD"),
    ("check for", "HYPOTHETICAL", "FORWARD"),
    ("concern for", "HYPOTHETICAL", "FORWARD"),
    ("?", "HYPOTHETICAL", "BACKWARD"),
    # Patient history, not this study (ConText HISTORICAL; medspaCy's default has "history", "h/o").
    ("hx", "HISTORICAL", "FORWARD"),
    ("hx of", "HISTORICAL", "FORWARD"),
    # Pseudo-negations (NegEx): "no change in the effusion" means the effusion is there.
    ("no change", "NEGATED_EXISTENCE", "PSEUDO"),
    ("no interval change", "NEGATED_EXISTENCE", "PSEUDO"),
    ("no significant change", "NEGATED_EXISTENCE", "PSEUDO"),
    ("no significant interval change", "NEGATED_EXISTENCE", "PSEUDO"),
    ("not significantly changed", "NEGATED_EXISTENCE", "PSEUDO"),
    ("no increase", "NEGATED_EXISTENCE", "PSEUDO"),
    ("no decrease", "NEGATED_EXISTENCE", "PSEUDO"),
    ("not changed", "NEGATED_EXISTENCE", "PSEUDO"),
    ("not increased", "NEGATED_EXISTENCE", "PSEUDO"),
    ("no substantial change", "NEGATED_EXISTENCE", "PSEUDO"),
    ("not only", "NEGATED_EXISTENCE", "PSEUDO"),
    ("without change", "NEGATED_EXISTENCE", "PSEUDO"),
    # Scope ends: a contrast, or a new finding stated as present ("No pneumothorax, small left effusion").
    ("however", "NEGATED_EXISTENCE", "TERMINATE"),
    ("although", "NEGATED_EXISTENCE", "TERMINATE"),
    ("though", "NEGATED_EXISTENCE", "TERMINATE"),
    ("except", "NEGATED_EXISTENCE", "TERMINATE"),
    ("with", "NEGATED_EXISTENCE", "TERMINATE"),
    ("there is", "NEGATED_EXISTENCE", "TERMINATE"),
    ("there are", "NEGATED_EXISTENCE", "TERMINATE"),
    ("which", "NEGATED_EXISTENCE", "TERMINATE"),
    ("whereas", "NEGATED_EXISTENCE", "TERMINATE"),
    ("while", "NEGATED_EXISTENCE", "TERMINATE"),
    ("is present", "NEGATED_EXISTENCE", "TERMINATE"),
    ("persists", "NEGATED_EXISTENCE", "TERMINATE"),
    ("remains", "NEGATED_EXISTENCE", "TERMINATE"),
    ("unchanged", "NEGATED_EXISTENCE", "TERMINATE"),
)

# "X is not seen": medspaCy's forward "is not" would otherwise claim the cue's first words.
CONTEXT_CUES += tuple(
    (f"{verb} {cue}", cat, direction)
    for cue, cat, direction in CONTEXT_CUES
    if cue.startswith("not ") and direction == "BACKWARD"
    for verb in ("is", "are", "was", "were")
)
CONTEXT_CUES += (
    ("less likely", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("unlikely", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("is unlikely", "POSSIBLE_EXISTENCE", "BACKWARD"),
)

# medspaCy default cues that read differently in chest-film reports: "evaluate for" / "rule out" state the
# question of the study (re-added above as HYPOTHETICAL), "no significant" would negate "no significant
# change" targets, "unlikely" is hedged not negated in CheXpert, "decline"/"return" are clinical-note words.
DROPPED_DEFAULT_CUES: frozenset[str] = frozenset(
    {
        "evaluate for",
        "checked for",
        "test for",
        "rule out",
        "r/o",
        "ro",
        "decline",
        "return",
        "unlikely",
        "doubt",
        ": no",
        ": none",
    }
)

# Sizes and sides (RadLex descriptors) used for the attributes of a positive finding.
SIZE_SMALL = ("small", "trace", "tiny", "minimal", "mild", "smallish", "little")
SIZE_LARGE = (
    "large",
    "moderate",
    "massive",
    "big",
    "sizeable",
    "sizable",
    "extensive",
    "moderate-sized",
    "huge",
)

# Section headers (medspaCy Sectionizer rules). HISTORY-like sections state the question, not the findings.
SECTIONS: dict[str, tuple[str, ...]] = {
    "findings": ("findings", "finding", "findings and impression", "report"),
    "impression": ("impression", "conclusion", "conclusions", "summary", "opinion"),
    "history": (
        "history",
        "clinical history",
        "indication",
        "indications",
        "clinical indication",
        "reason for exam",
        "reason for examination",
        "reason for study",
        "clinical information",
        "clinical details",
        "clinical question",
        "hx",
    ),
    "comparison": ("comparison", "comparisons", "technique", "exam", "examination"),
}

# A comma followed by a size word starts a new, positive finding: "No pneumothorax, large right effusion."
# (the CheXpert labeler's dependency rules split such lists; ConText needs the scope to end there).
SCOPE_BREAK_AFTER_COMMA: tuple[str, ...] = SIZE_SMALL + SIZE_LARGE + ("left", "right", "bilateral", "new")
