"""The merge card: every input's identity and hashes, the recipe, the logit check, the warnings.

Written with huggingface_hub's ModelCard as the merged model folder's README.md (the hub shows it; its
metadata names the base model and the tags), and as ``merge_card.md`` beside the folder.
"""

from __future__ import annotations

from pathlib import Path

from platypus.fields import Role

TARGET = Role.target.value  # the card's section on the model folded into


def card_text(card: dict) -> str:
    lines = ["# Merge card", ""]
    for key, value in card.items():
        if key in ("warnings", "compared", "adapters", TARGET) or isinstance(value, dict):
            continue
        lines.append(f"- **{key}**: {value}")
    lines += ["", "## Target", ""] + [f"- **{k}**: {v}" for k, v in card[TARGET].items() if k != "files"]
    lines += [f"- `{name}` sha256 {sha}" for name, sha in card[TARGET].get("files", {}).items()]
    combination = card.get(card["recipe"])  # the recipe's own parameters, when it combines adapters
    if isinstance(combination, dict):
        lines += ["", f"## Combination ({combination.get('how', card['recipe'])})", ""]
        lines += [f"- **{k}**: {v}" for k, v in combination.items() if k != "how"]
    lines += ["", "## Adapters", ""]
    for i, adapter in enumerate(card["adapters"]):
        lines.append(f"{i + 1}. `{adapter['path']}` (weight {adapter['weight']}, r {adapter['r']}, alpha "
                     f"{adapter['lora_alpha']}, targets {adapter['target_modules']})")
        lines.append(f"   - recorded base model: {adapter['recorded_base']}")
        lines += [f"   - `{name}` sha256 {sha}" for name, sha in adapter["weights_sha256"].items()]
        lines.append(f"   - `adapter_config.json` sha256 {adapter['config_sha256']}")
    lines += ["", "## Compared with the target", ""] + ([f"- {c}" for c in card.get("compared", [])] or ["- nothing"])
    lines += ["", "## Warnings", ""] + ([f"- {w}" for w in card["warnings"]] or ["- none"])
    return "\n".join(lines) + "\n"


def write_card(card: dict, stage_folder: Path, model_folder: Path) -> None:
    from huggingface_hub import ModelCard, ModelCardData

    text = card_text(card)
    base = card.get("adapter_recorded_base")
    data = ModelCardData(library_name="transformers", tags=["platypus", "merge", "lora"],
                         base_model=base if base and not Path(str(base)).exists() else None)
    ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}", body=text).save(
        model_folder / "README.md")
    (stage_folder / "merge_card.md").write_text(text)
