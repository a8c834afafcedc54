"""merge=into_model: fold the adapter into another fine-tune of the same architecture (``merge.target``): how
Stable-, Camel- and OpenOrca-Platypus2 were made."""

from platypus.stages.merge.recipes import Recipe


class IntoModel(Recipe):
    name = "into_model"
    target_required = True


RECIPE = IntoModel()
