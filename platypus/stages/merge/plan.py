"""The merge stage's plan: the target's download and the host memory of the engine that folds."""

from __future__ import annotations

from omegaconf import DictConfig

from platypus.fields import MergeEngine, Role
from platypus.planning import BYTES, GIB, PROCESS_GIB, ModelFacts, StagePlan, on_hub


def plan_merge(cfg: DictConfig, model: ModelFacts) -> StagePlan:
    from platypus.stages.merge import recipes

    recipe = recipes.build(cfg.merge)
    if not recipe.folds:
        return StagePlan()
    part = StagePlan(cpu=True, roles=[Role.merged.value])
    part.memory_gib[f"merge (CPU RAM, engine {cfg.merge.engine})"] = merge_memory_gib(cfg.merge, model)
    target = cfg.merge.target
    if target or recipe.target_required:
        part.roles.insert(0, Role.target.value)
    if recipe.target_required and not target:
        part.notes.append("merge.target is not set: give merge.target=<hub id or folder> to run the merge "
                          "(its download is then about the base's size)")
    elif target and on_hub(target) and "/" in str(target):
        part.downloads.append((f"merge target {target}", model.parameters * 2 / 1e9, "same architecture as the base, fp16"))
    return part


def merge_memory_gib(m: DictConfig, model: ModelFacts) -> float:
    """peft: the whole model in fold_dtype, plus an eighth of it in flight while saving. stream: the logit check (the
    model twice) where it fits merge.check_memory_gb, else one output shard plus the largest tensor read (16-bit),
    copied and its delta computed in fold_dtype and cast to dtype, plus the process itself (torch, the skeleton)."""
    fold, out, n, arch = BYTES[m.fold_dtype], BYTES[m.dtype], model.parameters, model.arch
    if m.engine == MergeEngine.peft:
        return n * fold / GIB + 2 * n * out / GIB / 8
    if 2 * n * fold <= m.check_memory_gb * GIB:
        return 2 * n * fold / GIB + PROCESS_GIB
    largest = arch["hidden_size"] * max(arch["vocab_size"], arch["intermediate_size"])
    return m.shard_mb / 1024 + largest * (2 + 2 * fold + out) / GIB + PROCESS_GIB
