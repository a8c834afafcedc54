"""The evaluate stage's plan (``plan=true``): the benchmarks' download, the scorer's peak memory, and the FLOPs of
the tokens it runs for each model the run evaluates. (``evaluate.plan=true``, a measured plan of the evaluation
alone, is platypus/stages/evaluate/plan.py.)"""

from __future__ import annotations

from omegaconf import DictConfig

from platypus.fields import BenchmarkSource, Dtype, Precision, Role
from platypus.planning import BYTES, GIB, OVERHEAD_GIB, ModelFacts, StagePlan

MFU = 0.45  # scoring: prefill only, long few-shot contexts (stated, not measured)
ROW = "evaluate"  # the stage's row in the plan's table

# Documents in each v1 task's evaluated split, and the tokens run per document at v1 few-shot counts: computed by
# our scorer (shared contexts once) and requested (what HFLM and vLLM run), counted by evaluate.plan on the full
# bundled sets with SmolLM2's tokenizer (`python run.py stages=[evaluate] evaluate.include=[base]
# eval=leaderboard_v1 evaluate.plan=true evaluate.plan_warmup_docs=0`; Llama-2's tokenizer gives somewhat more).
DOCUMENTS = {"arc_challenge": 1172, "hellaswag": 10042, "mmlu": 14042, "truthfulqa_mc2": 817}
TOKENS_PER_DOCUMENT = {
    "prefix": {"arc_challenge": 1000.0, "hellaswag": 995.2, "mmlu": 105.5, "truthfulqa_mc2": 107.7},
    "hf": {"arc_challenge": 3943.0, "hellaswag": 3503.0, "mmlu": 2881.6, "truthfulqa_mc2": 1408.8},
}


def planned_documents(benchmark: str, limit: float | None) -> int:
    """Documents evaluated under a limit (MMLU's applies per subject: 57 of them, ~246 documents each)."""
    from platypus.stages.evaluate.documents import sample_size

    if benchmark == "mmlu" and limit is not None and limit >= 1:
        return min(DOCUMENTS["mmlu"], 57 * int(limit))
    return sample_size(DOCUMENTS[benchmark], limit)


def plan_evaluation(cfg: DictConfig, model: ModelFacts, made: list[str]) -> StagePlan:
    """``made``: the models earlier stages of this run make (adapter, target, merged); the base always exists."""
    from platypus.stages.evaluate.backends import eval_backend, scores_shared_contexts
    from platypus.stages.evaluate.documents import task_limit

    roles = [role for role in cfg.evaluate.include if role == Role.base or role in made]
    eval_dtype = cfg.eval.dtype if cfg.eval.dtype != Precision.auto else Dtype.bfloat16
    gib = (model.parameters * BYTES[eval_dtype] + 4096 * model.arch["vocab_size"] * 4) / GIB \
        + float(cfg.eval.kv_cache_gb) + OVERHEAD_GIB
    per_document = TOKENS_PER_DOCUMENT["prefix" if scores_shared_contexts(cfg.eval) else "hf"]
    tokens = sum(planned_documents(t.benchmark, task_limit(cfg.eval, key)) * per_document[t.benchmark]
                 for key, t in cfg.eval.tasks.items() if t.benchmark in DOCUMENTS)
    part = StagePlan(memory_gib={ROW: gib}, flops=2 * model.parameters * tokens * len(roles), mfu=MFU,
                     mfu_basis="stated", spreads=True, too_big="{gpus} GPUs with eval.parallelize=true",
                     details={"models": roles, "tokens_per_model": tokens})
    part.basis = (f"{len(roles)} models ({', '.join(roles)}) x {tokens / 1e6:.3g} M tokens computed (eval.backend.model="
                  f"{eval_backend(cfg.eval).model}), MFU {part.mfu:.2f} ({part.mfu_basis})")
    if cfg.benchmarks.source == BenchmarkSource.hub:
        from platypus.resources import BENCHMARKS

        size = sum(f.stat().st_size for f in BENCHMARKS.rglob("*.gz"))
        part.downloads.append(("benchmarks (hub copies of ARC, HellaSwag, MMLU, TruthfulQA)", size / 1e9,
                               "the evaluated splits, compressed as bundled here; a hub repo may hold more"))
    return part
