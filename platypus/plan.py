"""``plan=true``: what a run will do, download, need and take, printed before anything is downloaded or loaded.

A loop over the run's stages, like the pipeline: each stage plans itself (``Stage.plan``: its downloads, memory,
FLOPs and their basis) from the composed config and the figures in platypus/planning.py, so it answers offline
and on a laptop for ``experiment=platypus2_70b`` as for the default run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from platypus import stages
from platypus.fields import Quantization
from platypus.planning import (A100, BYTES, CALIBRATED, CALIBRATION, H100, H100_SPEEDUP, ModelFacts, architecture,
                               fits_80gb, gpu_hours, gpus_needed, on_hub, parameters)
from platypus.runtime.errors import PlatypusError


def model_facts(cfg: DictConfig) -> ModelFacts:
    arch = architecture(cfg)
    if arch is None:
        raise PlatypusError(f"plan=true: model.path={cfg.model.path!r} is a hub id and model.architecture is not set, so "
                            f"its size is unknown offline: give its hidden_size, intermediate_size, num_hidden_layers, "
                            f"num_attention_heads, num_key_value_heads, vocab_size (as conf/model/llama2_13b.yaml "
                            f"does).")
    quantized = cfg.model.quantization != Quantization.none
    return ModelFacts(arch, parameters(arch), BYTES[cfg.model.quantization if quantized else cfg.model.dtype])


def plan(cfg: DictConfig) -> dict[str, Any]:
    """The plan as data: stages, downloads, memory and GPU time per stage (printed by :func:`text`)."""
    model = model_facts(cfg)
    found: dict[str, Any] = {"stages": list(cfg.stages), "parameters": model.parameters, "downloads": [],
                             "memory_gib": {}, "flops": {}, "hours": {}, "basis": {}, "fits": {}, "lines": [],
                             "notes": []}
    if on_hub(cfg.model.path):
        found["downloads"].append((f"model {cfg.model.path}", model.parameters * 2 / 1e9, "fp16 safetensors"))
    made: list[str] = []
    for name in cfg.stages:
        part = stages.get(cfg, name).plan(cfg, model, made)
        made += part.roles
        found["downloads"] += part.downloads
        found["memory_gib"].update(part.memory_gib)
        found["lines"] += part.lines
        found["notes"] += part.notes
        found["fits"].update({row: "CPU" if part.cpu else fits_80gb(gib, part) for row, gib in part.memory_gib.items()})
        if part.details:
            found[name] = {**part.details, "mfu": part.mfu, "mfu_basis": part.mfu_basis}
        if part.flops:
            gpus = part.gpus or gpus_needed(max(part.memory_gib.values()), part.spreads)
            found["flops"][name] = part.flops
            found["hours"][name] = gpu_hours(part.flops, part.mfu, gpus)
            found["basis"][name] = part.basis
    return found


def text(cfg: DictConfig, found: dict[str, Any]) -> str:
    name = OmegaConf.select(cfg, "published.model") or f"{cfg.model.name} + {cfg.merge.name}"
    lines = [f"# Plan: {name}", "", f"stages: {', '.join(found['stages'])}"]
    lines.append(f"model: {cfg.model.path} ({found['parameters'] / 1e9:.2f} B parameters, {cfg.model.dtype}"
                 f"{', ' + cfg.model.quantization if cfg.model.quantization != 'none' else ''})")
    lines += ["", "| download | GB | what |", "|---|---|---|"]
    lines += [f"| {what} | {gb:.3g} | {why} |" for what, gb, why in found["downloads"]] or ["| nothing | 0 | |"]
    lines += ["", f"| stage | memory GiB | fits one 80 GB GPU | {A100['name']} GPU-hours | {H100} GPU-hours | basis |",
              "|---|---|---|---|---|---|"]
    for row, gib in found["memory_gib"].items():
        stage = row.split()[0]
        hours = found["hours"].get(stage, {})
        basis = found["basis"].get(stage, "")
        if hours.get("gpus", 1) > 1:
            basis += f"; x {hours['gpus']} GPUs (device_map=auto runs one GPU at a time)"
        a100 = f"{hours[A100['name']]:.3g}" if hours else "–"
        h100 = f"{hours[H100][0]:.3g}–{hours[H100][1]:.3g}" if hours else "–"
        lines.append(f"| {row} | {gib:.1f} | {found['fits'][row]} | {a100} | {h100} | {basis} |")
    lines.append(f"\nUtilisation: training on an 8-bit/4-bit base at {CALIBRATED:.3f} of the A100's peak, calibrated to "
                 f"the paper's one epoch of 13B in ~{CALIBRATION['hours']:g} h on one A100 ({CALIBRATION['flops_per_token']} "
                 f"x {CALIBRATION['parameters'] / 1e9:.2f} B x {CALIBRATION['tokens'] / 1e6:.2f} M tokens); H100 = "
                 f"A100 / {H100_SPEEDUP[0]:g}-{H100_SPEEDUP[1]:g}.")
    lines += [f"\n{line}" for line in found["lines"]]
    lines += [f"\nNote: {note}" for note in found["notes"]]
    return "\n".join(lines) + "\n"


def write(cfg: DictConfig, root: Path) -> dict[str, Any]:
    """Print the plan and write ``plan.md`` / ``plan.json`` into the run folder; nothing else happens."""
    import logging

    found = plan(cfg)
    shown = text(cfg, found)
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan.md").write_text(shown)
    (root / "plan.json").write_text(json.dumps(found, indent=1, default=str))
    logging.getLogger("platypus").info(f"\n{shown}(plan only: nothing was downloaded, loaded or run; {root / 'plan.md'})")
    return found
