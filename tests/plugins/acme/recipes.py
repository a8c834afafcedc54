"""A merge recipe: fold one adapter at a fraction of its strength (PEFT's linear combination of one adapter)."""

from dataclasses import dataclass

from platypus.stages.merge.recipes import Recipe


@dataclass
class Damped(Recipe):
    name = "damped"
    into_base_only = True
    strength: float = 0.5

    def __post_init__(self):
        if not 0 < self.strength <= 1:
            raise ValueError(f"strength={self.strength} must be in (0, 1]")

    def combine(self, peft_model, names, weights, seed):
        peft_model.add_weighted_adapter(names, [self.strength], "damped", combination_type="linear")
        return "damped", [f"adapter folded at strength {self.strength}"]

    def describe(self, weights, seed):
        return {"strength": self.strength}
