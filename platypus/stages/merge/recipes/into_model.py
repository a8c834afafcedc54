"""merge=into_model: fold the adapter into another fine-tune of the same architecture (``merge.target``): how
Stable-, Camel- and OpenOrca-Platypus2 were made."""

from dataclasses import dataclass

from platypus.stages.merge.recipes import Recipe


@dataclass
class IntoModel(Recipe):
    name = "into_model"
    target_required = True
