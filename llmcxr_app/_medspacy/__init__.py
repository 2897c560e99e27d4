"""medspaCy 1.3.1's ConText and Sectionizer (github.com/medspacy/medspacy, MIT licence: LICENSE here),
vendored unchanged apart from this file and util.py's imports.

Why vendored: every medspaCy release caps spaCy below 3.8 on Python < 3.12 (its requirements and
PyRuSH's), and spaCy 3.7 needs thinc 8.2, which needs numpy < 2, while this project needs numpy >= 2. The
ConText and Sectionizer code runs unchanged on spaCy 3.8, which requirements.txt pins. Importing this package
registers the "medspacy_context" and "medspacy_sectionizer" spaCy factories and the span / doc extensions
(is_negated, is_uncertain, section_category ...). labeler.py is the only user.
"""

from ._extensions import set_extensions
from .context import ConText, ConTextRule
from .section_detection import Sectionizer, SectionRule

set_extensions()

__all__ = ["ConText", "ConTextRule", "Sectionizer", "SectionRule"]
