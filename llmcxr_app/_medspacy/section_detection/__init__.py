from .sectionizer import Sectionizer, Section

from .section_rule import SectionRule
from .section import Section

__all__ = [
    "Sectionizer",
    "SectionRule",
    "Section",
]
