from .base_rule import BaseRule
