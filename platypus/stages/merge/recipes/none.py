"""merge=none: keep the adapter unmerged (evaluate scores it through PEFT in place of a merged model)."""

from dataclasses import dataclass

from platypus.stages.merge.recipes import Recipe


@dataclass
class KeepAdapter(Recipe):
    name = "none"
    folds = False
