"""The evaluate stage's plan (``plan=true``): the benchmarks' download, the scorer's peak memory, and the FLOPs of
the tokens it runs for each model the run evaluates. (``evaluate.plan=true``, a measured plan of the evaluation
alone, is platypus/stages/evaluate/plan.py.)"""

from __future__ import annotations

from omegaconf import DictConfig

from platypus.config import BenchmarkPlan
from platypus.fields import BenchmarkSource, Dtype, Precision, Role
from platypus.planning import BYTES, GIB, OVERHEAD_GIB, ModelFacts, StagePlan

MFU = 0.45  # scoring: prefill only, long few-shot contexts (stated, not measured)
ROW = "evaluate"  # the stage's row in the plan's table


def planned_documents(figures: BenchmarkPlan, limit: float | None) -> int:
    """Documents evaluated under a limit (a count applies per subject: MMLU's 57, ~246 documents each); ``figures``:
    the benchmark's ``facts.plan`` (conf/benchmarks/)."""
    from platypus.stages.evaluate.documents import sample_size

    if figures.subjects > 1 and limit is not None and limit >= 1:
        return min(figures.documents, figures.subjects * int(limit))
    return sample_size(figures.documents, limit)


def planned_tokens(cfg: DictConfig, computed: bool) -> float:
    """Tokens run per model over the suite's tasks whose benchmark has planning figures (``computed``: by a scorer
    that computes each shared context once, else as requested)."""
    from platypus.stages.evaluate.documents import task_limit

    tokens = 0.0
    for key, task in cfg.eval.tasks.items():
        figures = cfg.benchmarks.sets[task.benchmark].facts.plan if task.benchmark in cfg.benchmarks.sets else None
        if figures is not None:
            per_document = figures.tokens_computed if computed else figures.tokens_requested
            tokens += planned_documents(figures, task_limit(cfg.eval, key)) * per_document
    return tokens


def plan_evaluation(cfg: DictConfig, model: ModelFacts, made: list[str]) -> StagePlan:
    """``made``: the models earlier stages of this run make (adapter, target, merged); the base always exists."""
    from platypus.stages.evaluate.backends import eval_backend, scores_shared_contexts

    roles = [role for role in cfg.evaluate.include if role == Role.base or role in made]
    eval_dtype = cfg.eval.dtype if cfg.eval.dtype != Precision.auto else Dtype.bfloat16
    gib = (model.parameters * BYTES[eval_dtype] + 4096 * model.arch["vocab_size"] * 4) / GIB \
        + float(cfg.eval.kv_cache_gb) + OVERHEAD_GIB
    tokens = planned_tokens(cfg, computed=scores_shared_contexts(cfg.eval))
    part = StagePlan(memory_gib={ROW: gib}, flops=2 * model.parameters * tokens * len(roles), mfu=MFU,
                     mfu_basis="stated", spreads=True, too_big="{gpus} GPUs with eval.parallelize=true",
                     details={"models": roles, "tokens_per_model": tokens})
    part.basis = (f"{len(roles)} models ({', '.join(roles)}) x {tokens / 1e6:.3g} M tokens computed (eval.backend.model="
                  f"{eval_backend(cfg.eval).model}), MFU {part.mfu:.2f} ({part.mfu_basis})")
    if cfg.benchmarks.source == BenchmarkSource.hub:
        from platypus.resources import BENCHMARKS

        size = sum(f.stat().st_size for f in BENCHMARKS.rglob("*.gz"))
        part.downloads.append((f"benchmarks (hub copies of {', '.join(cfg.benchmarks.sets)})", size / 1e9,
                               "the evaluated splits, compressed as bundled here; a hub repo may hold more"))
    return part
