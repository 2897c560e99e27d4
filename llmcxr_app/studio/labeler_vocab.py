"""Vocabulary of the report labeler (labeler.py): how radiologists name the seven findings, how they say a
finding is normal, and the NegEx termsets (negation, hedging, history/indication, pseudo-negation) that
labeler.py gives negspacy.

Written for this project from public sources read for facts (no list is copied verbatim):

- CheXpert labeler (Irvin et al., AAAI 2019; github.com/stanfordmlgroup/chexpert-labeler, phrases/mention/
  and phrases/unmention/): which words mention each observation ("pleural fluid", "effusion"; "vascular
  congestion", "pulmonary congestion", "chf" for edema; "cardiac silhouette", "heart size", "enlarged heart"
  for cardiomegaly; "consolidat-"); its NegBio-derived negation and uncertainty patterns ("clear of",
  "negative for", "cannot exclude", "may represent", "question of").
- NegEx (Chapman et al., J Biomed Inform 2001) trigger lists as shipped in negspacy's "en_clinical"
  termset, which labeler.py loads and extends here; ConText (Harkema et al., J Biomed Inform 2009) for the
  categories beyond negation (hypothetical / historical, possible existence).
- RadLex (RSNA) preferred names and synonyms: "pleural effusion", "hydrothorax", "pneumothorax",
  "airspace disease", "consolidation", "pulmonary edema", "cardiomegaly", "cephalization", "Kerley B lines",
  "endotracheal tube", "cardiac pacemaker", "implantable cardioverter-defibrillator".
- Radiology reporting usage (Fleischner Society glossary, Hansell et al., Radiology 2008) for the wording
  of normal statements ("the lungs are clear", "costophrenic angles are sharp") and pseudo-negations
  ("no change in", "no interval change").
- Common report abbreviations and typos (PTX, PNX, CHF, ETT, NGT, ICD/AICD, PPM "permanent pacemaker",
  "eff.", "consol.", "cardiomeg.", "pnuemothorax", "effusoin"); a "?" written before a finding ("?PTX",
  "?small effusion") is the query of British reporting shorthand: a hedge.
Patterns are regular expressions over lower-cased text; word boundaries are added by the labeler.
"""

from __future__ import annotations

_SIZE_ADV = (
    r"(?:(?:mildly|moderately|markedly|severely|slightly|massively|borderline|top[- ]normal|too|very)\s+)?"
)
_HEART = r"(?:heart(?:\s+size)?|cardiac\s+(?:silhouette|size|shadow|contour)|cardiomediastinal\s+silhouette)"
_VERB = r"(?:\s+(?:is|appears|remains|looks|are|was|has\s+become))?"

# Mentions per label. CheXpert's mention lists and RadLex synonyms; typos seen in dictated reports.
TARGETS: dict[str, tuple[str, ...]] = {
    "cardiomegaly": (
        r"cardiomegaly|cardiomegally|cardiac\s+enlargement|cardiomyopathy",  # CheXpert + RadLex
        r"cardiomeg\w*",  # the clinicians' shortening "cardiomeg."
        rf"enlarged\s+{_HEART}|enlargement\s+of\s+the\s+{_HEART}",
        rf"(?:the\s+)?{_HEART}{_VERB}\s+{_SIZE_ADV}(?:enlarged|large|big|increased|prominent)",
        r"(?:large|big|globular)\s+heart|(?:heart|cardiac)\s+is\s+(?:large|big)",
        r"swelling\s+of\s+the\s+heart|swollen\s+heart|heart\s+(?:is\s+|looks\s+)?swollen",  # plain words
    ),
    "effusion": (
        r"(?<!pericardial\s)(?<!pericardial\s\s)(?:pleural\s+)?(?:effusions?|effusoin|efusion|effussion|effs?)",
        r"pleural\s+fluid|hydro-?(?:pneumo)?thorax|fluid\s+in\s+the\s+(?:pleural\s+space|(?:\w+\s+){0,2}fissure)",  # CheXpert + RadLex
        r"(?:costophrenic|cp)\s+angles?\s+(?:(?:is|are|appears?|remains?)\s+)?(?:\w+\s+)?blunt\w*",
        r"blunt\w*\s+(?:of\s+)?(?:the\s+)?(?:\w+\s+)?(?:costophrenic|cp)\s+angles?",
        r"layering\s+fluid|meniscus(?:\s+sign)?|ha?emo-?thorax",
        # Plain words: fluid around a lung (in the lungs is oedema), fluid at a lung base.
        r"(?:fluid|water|blood)\s+(?:(?:has\s+)?collect\w*\s+)?(?:around|surrounding|outside)\s+"
        r"(?:the\s+|both\s+|either\s+)?(?:\w+\s+)?lungs?",
        r"(?:fluid|water)\s+at\s+(?:the\s+|both\s+)?(?:(?:left|right)\s+)?(?:lung\s+)?bases?",
        r"(?:fluid|water)\s+at\s+the\s+bottom\s+of\s+(?:the\s+)?(?:\w+\s+)?lungs?",
        r"blood\s+in\s+the\s+(?:\w+\s+)?pleural\s+space",
    ),
    "pneumothorax": (
        r"pneumothora(?:x|ces)|pnuemothorax|pneumothroax|pneumothorx|ptx|pnx",  # RadLex, typos, abbreviations
        r"pleural\s+air(?:\s+collection)?|(?:apical|pleural)\s+air\s+collection",
        r"visceral\s+pleural\s+line|pleural\s+line\s+(?:is\s+)?(?:seen|visible)",
        r"(?:absent|no|without)\s+lung\s+markings",  # the sign as a report states it
        # Plain words: a collapsed (or dropped) lung, air leaked around a lung; a collapsed lobe is not one.
        r"(?:collapsed|dropped)\s+(?:(?:left|right)\s+)?lung|lung\s+(?:is\s+|has\s+)?(?:partly\s+|partially\s+|fully\s+)?"
        r"(?:collapsed|dropped)",
        r"air\s+(?:(?:leak\w*|trapped)\s+)?(?:around|outside|surrounding)\s+(?:the\s+)?(?:\w+\s+)?lungs?",
    ),
    "consolidation": (
        r"consolidat\w*|consol|pneumonia|pneumonitis|infiltrates?|infiltration",  # CheXpert; "consol."
        r"air\s*-?\s*space\s+(?:disease|opacit\w+|process|consolidation)",  # RadLex "airspace disease"
        r"focal\s+(?:opacit\w+|opacification)|lobar\s+opacit\w+|air\s+bronchograms?",
        r"(?:chest\s+|lung\s+)?infection|(?:patchy\s+|focal\s+)?shadowing",  # plain / British words
    ),
    "edema": (
        r"(?:pulmonary\s+|interstitial\s+|alveolar\s+)?o?edema|oedema",  # CheXpert "edema"
        r"(?:pulmonary\s+)?vascular\s+congestion|pulmonary\s+congestion|congestive\s+heart\s+failure|chf",
        r"cephali[sz]ation|kerley(?:\s+b)?\s+lines?|bat-?\s?wing|vascular\s+redistribution",  # RadLex
        r"fluid\s+overload|(?:pulmonary\s+)?venous\s+(?:hypertension|congestion)",
        r"(?:fluid|water)\s+in\s+(?:the\s+|both\s+)?lungs",  # plain words (around the lungs: effusion)
        r"lungs?\s+(?:are\s+)?(?:full\s+of\s+(?:fluid|water)|waterlogged)|waterlogged\s+lungs?",
    ),
    "ett": (
        r"endotracheal(?:\s+tube)?|endo-tracheal\s+tube|et\s+tube|ett|intubated|intubation",
        r"tracheostomy\s+tube|trach\s+tube",
        r"breathing\s+tube|tube\s+in\s+the\s+windpipe|(?:on\s+(?:the\s+|a\s+)?)?ventilator",  # plain words
        r"tube\s+down\s+(?:into\s+)?(?:the\s+)?(?:throat|windpipe)|breathing\s+machine",
    ),
    "pacemaker": (
        r"pacemaker|pacer|ppm|pacing\s+(?:lead|wire|device|generator)s?|a?icd|defibrillator|cardioverter",
        r"(?:dual|single)[- ]chamber\s+(?:pacemaker|device)|transvenous\s+(?:leads?|pacing)",
        r"heart\s+device",  # plain words
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

# NegEx termsets for negspacy (labeler.py). Negation starts from negspacy's "en_clinical" termset (NegEx's
# clinical triggers, Chapman et al. 2001); these lists add what chest-film reports say, read from
# CheXpert/NegBio's negation patterns and NegEx's post-negation and pseudo-negation triggers, and drop the
# triggers that read differently here. Keys are negspacy's: preceding / following / pseudo / termination.
NEGATION_ADD: dict[str, tuple[str, ...]] = {
    # Before the finding: "No focal area of consolidation, pleural effusion, pneumothorax" (NegEx scope runs
    # to the end of the sentence or a termination cue, so comma lists without "or" are covered).
    "preceding_negations": (
        "clear of",
        "negative for",
        "neg for",
        "negative",
        "no definite",
        "no visible",
        "no focal",
        "no new",
        "nor",
        "resolution of",
        "resolved",
        "removal of",
        "interval removal of",
        "resolving",
        "without evidence of",
        "no radiographic evidence of",
        "no findings of",
    ),
    # After the finding: "Pneumothorax has resolved", "ET tube removed", "effusion not seen".
    "following_negations": (
        "resolved",
        "has resolved",
        "have resolved",
        "removed",
        "has been removed",
        "taken out",  # plain words, as "gone" and "re-expanded" (a lung that was collapsed)
        "has gone",
        "have gone",
        "re-expanded",
        "has re-expanded",
        "cleared",
        "no longer",
        "not seen",
        "not identified",
        "not visualized",
        "not present",
        "not demonstrated",
        "is absent",
        "are absent",
        "absent",
        "excluded",
        "withdrawn",
        "none",
    ),
    # Pseudo-negations (NegEx): "no change in the effusion" means the effusion is there; a hedge that
    # contains a negation word ("cannot be excluded") is no negation.
    "pseudo_negations": (
        "no change in",
        "no significant change in",
        "not significantly changed",
        "no decrease",
        "not changed",
        "not increased",
        "no substantial change",
        "without change",
        "cannot exclude",
        "can not exclude",
        "cannot be excluded",
        "can not be excluded",
        "cannot be entirely excluded",
        "not entirely excluded",
        "not excluded",
        "cannot rule out",
        "cannot be ruled out",
        "difficult to exclude",
    ),
    # Scope ends: a contrast, or a new finding stated as present ("No pneumothorax; there is a small ...").
    "termination": (
        "with",
        "there is",
        "there are",
        "whereas",
        "while",
        "is present",
        "are present",
        "persists",
        "remains",
        "unchanged",
    ),
}
# negspacy en_clinical triggers that read differently in chest-film reports: "evaluate for" / "rule out"
# state the question of the study (HISTORY below), "versus" and "unlikely" hedge (CheXpert reads them as
# uncertain), "doubt" / "declined" / "denies" are clinical-note words.
NEGATION_DROP: dict[str, tuple[str, ...]] = {
    "preceding_negations": ("evaluate for", "rule out", "rules out", "r/o", "ro", "versus", "doubt"),
    "following_negations": ("unlikely", "declined"),
}

# Hedges (CheXpert/NegBio uncertainty patterns; ConText's POSSIBLE_EXISTENCE triggers): "may represent
# interstitial edema", "question of edema", "pneumothorax cannot be excluded". A second negspacy Negex
# reads these with its own extension.
_CANNOT = ("cannot", "can not")
QUERY_MARK = "\u00bf"  # labeler.mentions writes "?" before a letter as this ("?PTX"): a hedge below
HEDGE: dict[str, tuple[str, ...]] = {
    "preceding_negations": (
        QUERY_MARK,
        "may represent",
        "may reflect",
        "could represent",
        "could reflect",
        "may be",
        "may have",
        "might be",
        "could be",
        "question of",
        "questionable",
        "possible",
        "possibly",
        "cannot exclude",
        "can not exclude",
        "cannot rule out",
        "can not rule out",
        "probable",
        "probably",
        "likely",
        "versus",
        "vs",
        "suspected",
        "suspicious for",
        "concerning for",
        "suggest",
        "suggesting",
        "suggests",
        "suggestive of",
        "presumed",
        "equivocal",
        "borderline",
        "difficult to exclude",
    ),
    "following_negations": (
        *(f"{c}{be} {how}excluded" for c in _CANNOT for be in ("", " be") for how in ("", "entirely ")),
        "not excluded",
        "not entirely excluded",
        "not ruled out",
        "cannot be ruled out",
        "is possible",
        "versus",
        "vs",
        "suspected",
        "not well evaluated",
        "less likely",
        "unlikely",
        "is likely",
    ),
    "pseudo_negations": (),
    "termination": (),
}

# The patient's history or the question of the study, not a finding of it (ConText's HISTORICAL and
# HYPOTHETICAL triggers; negspacy's clinical "evaluate for" / "rule out" moved here): "history of CHF",
# "evaluate for pneumothorax", "r/o pneumonia". A third Negex reads these.
HISTORY: dict[str, tuple[str, ...]] = {
    "preceding_negations": (
        "history of",
        "h/o",
        "hx",
        "hx of",
        "evaluate for",
        "evaluation for",
        "eval for",
        "assess for",
        "assessment of",
        "rule out",
        "r/o",
        "check for",
        "concern for",
    ),
    "following_negations": ("?",),
    # A hedge that contains a question cue ("cannot rule out a small pneumothorax") is read by HEDGE.
    "pseudo_negations": ("cannot rule out", "can not rule out", "cannot be ruled out", "not ruled out"),
    # The present study starts again: "History of CHF, now with a small left effusion."
    "termination": ("now", "currently", "today", "presents with"),
}

# Shortened finding words whose period ends no sentence when a word describing the finding follows
# ("dense consol. right upper lobe", "small eff. on the left"; labeler.mentions).
SHORTENED = ("eff", "effs", "consol", "cardiomeg")
ATTACHED = ("right", "left", "r", "l", "rul", "rll", "lul", "lll", "rml", "bilat", "bilateral", "both")
ATTACHED += ("in", "at", "of", "on", "base", "basal", "apex", "apical", "upper", "lower", "with")

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

# Section headers (labeler._sections): a header is one of these followed by ":", or alone on
# its line. HISTORY-like sections state the question, not the findings.
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
# (the CheXpert labeler's dependency rules split such lists; NegEx needs the scope to end there: each
# becomes a termination phrase ", large", ", right" ...).
SCOPE_BREAK_AFTER_COMMA: tuple[str, ...] = SIZE_SMALL + SIZE_LARGE + ("left", "right", "bilateral", "new")
