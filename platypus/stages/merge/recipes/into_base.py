"""merge=into_base: fold the adapter into the model it was trained on (``merge_and_unload``)."""

from dataclasses import dataclass

from platypus.stages.merge.recipes import Recipe


@dataclass
class IntoBase(Recipe):
    name = "into_base"
    into_base_only = True
