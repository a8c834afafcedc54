"""merge=none: keep the adapter unmerged (evaluate scores it through PEFT in place of a merged model)."""

from platypus.stages.merge.recipes import Recipe


class KeepAdapter(Recipe):
    name = "none"
    folds = False


RECIPE = KeepAdapter()
