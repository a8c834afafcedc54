"""A shared-prefix loglikelihood scorer: lm-eval's HFLM that computes each context once.

lm-eval's HF backend runs ``context + continuation`` through the model for every answer choice (it
reuses a context only when every continuation is a single token), so a 25-shot ARC question with four
answers computes its ~1,100-token context four times, and every MMLU question of a subject recomputes
the same 5-shot header. This class takes the requests exactly as HFLM tokenizes them (same
context/continuation split, BOS handling and left truncation: it inherits all of it) and

1. groups them by the tokens that precede their first scored position (the context, after truncation),
2. sorts the groups by those tokens, so contexts that share a prefix (a subject's few-shot header,
   TruthfulQA's six-question primer, a repeated exemplar) are neighbours,
3. runs each context once, starting from the key/value cache of the longest prefix it shares with the
   previous one (only the last position's logits are computed: the first answer token's),
4. scores the answers' remaining tokens in one batch on the context's cache (copied over the answers
   scored together, as many as ``kv_cache_gb`` allows);
5. runs neighbouring contexts whose answers are all one token (MMLU's letters) together on the cache of the
   prefix they share (when it is at least half of each and costs at most ``BATCH_SLACK`` reused tokens per
   context): their rests packed into one sequence under a block-causal mask, no padding.

Steps 1-3 and 5 are planned without a model in platypus/stages/evaluate/prefix_schedule.py. It returns
HFLM's ``(sum of logprobs, is_greedy)`` per request, in the requests' order; only the floating-point summation
order differs (within 1e-4 of HFLM in float32, tests/test_prefix_scorer.py).
``loglikelihood_rolling`` and ``generate_until`` are HFLM's. Registered with lm-eval as ``hf-prefix``.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from platypus.fields import LogprobSum
from platypus.stages.evaluate.prefix_schedule import (
    CONTEXTS_PER_PASS, PREFIX_NAME, Group, Pass, TokenCounts, count_tokens, model_input, passes, rows_per_pass,
)

DEFAULT_KV_CACHE_GB = 4.0


def sum_logprobs(values: torch.Tensor, how: str) -> float:
    """A continuation's log-probability from its tokens' ones (in the softmax's dtype). ``model_dtype``: one sum in
    that dtype, rounded to it, as HFLM (``float(logits.sum())``) and the v1 harness do; ``float64``: exact sum."""
    return float(values.sum()) if how == LogprobSum.model_dtype else float(values.double().sum())


@register_model(PREFIX_NAME)
class PrefixLM(HFLM):
    """HFLM whose ``loglikelihood`` computes each shared context once (see the module docstring).

    ``kv_cache_gb``: memory for key/value caches, the current context's and its copies for the answers
    scored together; answers beyond it are scored in further passes on the same context.
    ``answers_per_pass``: at most this many answers per pass (default: as many as the memory allows; on a
    2-core CPU scoring TruthfulQA's answers together took half the time of one by one). ``batch_size``
    keeps its HFLM meaning for the paths left to HFLM (rolling loglikelihood, generation).
    """

    def __init__(self, *args, kv_cache_gb: float | str = DEFAULT_KV_CACHE_GB, answers_per_pass: int | str | None = None,
                 logprob_sum: str = LogprobSum.float64, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.logprob_sum = LogprobSum(logprob_sum)  # lm-eval's model_args: a string, refused here if unknown
        self.kv_cache_bytes = int(float(kv_cache_gb) * 2**30)
        self.answers_per_pass = int(answers_per_pass) if answers_per_pass not in (None, "", "None") else 1 << 30
        self.counts = TokenCounts()  # what this object has scored so far
        self._dry_runs: list[TokenCounts] | None = None

    # ------------------------------------------------------------------ lm-eval's entry point
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        # loglikelihood_rolling's windows (no request strings) and encoder-decoder models: HFLM's own path.
        if self.backend != "causal" or override_bs is not None or any(r[0] is None for r in requests):
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        from tqdm import tqdm

        longest = max(len(model_input(c, k, self.max_length)) for _, c, k in requests)
        max_rows, context_rows = self.answers_per_pass, self._context_rows(longest)
        counts = count_tokens(requests, self.max_length, max_rows, context_rows)
        if self._dry_runs is not None:
            self._dry_runs.append(counts)
            return [(0.0, False)] * len(requests)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        cache = None
        with tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Scoring (shared prefixes)") as bar:
            for step in passes(requests, self.max_length, context_rows):
                if len(step.groups) > 1:
                    firsts, cache = self._run_contexts(step, cache)
                else:
                    first, cache = self._run_context(step.groups[0].context, step.reuse, cache)
                    firsts = [first]
                for group, first in zip(step.groups, firsts):
                    for (index, _), scored in zip(group.choices, self._score_answers(group, first, cache, max_rows)):
                        results[index] = scored
                        self.cache_hook.add_partial("loglikelihood", requests[index][0], scored)
                    bar.update(len(group.choices))
        self.counts.add(counts)
        return results

    @contextmanager
    def dry_run(self) -> Iterator[list[TokenCounts]]:
        """Inside, ``loglikelihood`` runs no model: it tokenizes, appends its counts to the list yielded and
        returns placeholder scores."""
        self._dry_runs = []
        try:
            yield self._dry_runs
        finally:
            self._dry_runs = None

    # ------------------------------------------------------------------ the two kinds of forward pass
    def _forward(self, input_ids: torch.Tensor, cache, logits_to_keep: int = 0, **kwargs):
        """One forward pass on ``cache`` (None: from position 0), under HFLM's autocast settings;
        ``logits_to_keep``: the last n positions. Always a count: accelerate's hook (``eval.parallelize``) moves a
        tensor argument to the first GPU, while the last hidden states live on the last one."""
        kwargs.update({self._cache_argument: cache, "use_cache": True})
        if logits_to_keep and self._keeps_logits:
            kwargs["logits_to_keep"] = logits_to_keep
        with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                             enabled=self.mixed_precision_dtype is not None):
            out = self.model(input_ids=input_ids, **kwargs)
        cache = getattr(out, "cache", None)
        return out.logits, cache if cache is not None else out.past_key_values

    def _run_context(self, context: tuple[int, ...], reuse: int, cache):
        """Log-probabilities after ``context`` (its last position) and its key/value cache, computing only the
        tokens after the first ``reuse`` (taken from ``cache``, the previous context's)."""
        start = self._cache_from([(k[:, :, :reuse], v[:, :, :reuse]) for k, v in self._layers(cache)]) if reuse else None
        ids = torch.tensor([context[reuse:]], dtype=torch.long, device=self.device)
        logits, cache = self._forward(ids, start, logits_to_keep=1)
        return F.log_softmax(logits[0, -1], dim=-1, dtype=self.softmax_dtype), cache

    def _context_rows(self, longest: int) -> int:
        """Contexts packed per pass: ``CONTEXTS_PER_PASS``, ``answers_per_pass`` and the ``kv_cache_gb`` budget
        for that many contexts of up to ``longest`` tokens (the longest model input of the requests, at most
        ``max_length``) in one sequence's cache (per token: from the model's config, layers x key/value heads x
        head size)."""
        config = self.model.config
        heads = getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads", 1)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        per_token = 2 * config.num_hidden_layers * heads * head_dim * next(self.model.parameters()).element_size()
        tokens = min(self.max_length, longest)
        return max(1, min(CONTEXTS_PER_PASS, self.answers_per_pass, self.kv_cache_bytes // (per_token * tokens)))

    def _run_contexts(self, step: Pass, cache):
        """:meth:`_run_context` for a batch of contexts with single-token answers: their shared first
        ``step.common`` tokens once, then the rest of every context packed into one sequence, each part seeing
        the shared prefix and itself only (a block-causal mask, positions restarting after the prefix), so no
        position is padding. Returns the log-probabilities after each context and the shared prefix's cache."""
        contexts, common = [g.context for g in step.groups], step.common
        reuse = min(step.reuse, common)
        layers = [(k[:, :, :reuse], v[:, :, :reuse]) for k, v in self._layers(cache)] if reuse else []
        if common > reuse:
            ids = torch.tensor([contexts[0][reuse:common]], dtype=torch.long, device=self.device)
            _, shared = self._forward(ids, self._cache_from(layers) if layers else None, logits_to_keep=1)
            layers = self._layers(shared)
        parts = [len(c) - common for c in contexts]
        owner = torch.repeat_interleave(torch.arange(len(parts), device=self.device), torch.tensor(parts, device=self.device))
        offset = torch.cat([torch.arange(n, device=self.device) for n in parts])
        own = (owner[:, None] == owner[None, :]) & (offset[:, None] >= offset[None, :])
        allowed = torch.cat([own.new_ones(len(owner), common), own], dim=1)
        dtype = layers[0][0].dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill(~allowed, torch.finfo(dtype).min)
        ids = torch.tensor([[t for c in contexts for t in c[common:]]], dtype=torch.long, device=self.device)
        last = torch.cumsum(torch.tensor(parts, device=self.device), 0) - 1
        keep = sum(parts) - parts[0] + 1  # from the first context's last position to the end: a count, never a tensor
        logits, _ = self._forward(ids, self._cache_from(layers), logits_to_keep=keep,
                                  position_ids=(common + offset)[None], attention_mask=mask[None, None])
        kept = logits.shape[1]  # keep positions, or every one when the model cannot keep fewer
        logits = logits[:, (last - (sum(parts) - kept)).to(logits.device)]
        logprobs = F.log_softmax(logits[0], dim=-1, dtype=self.softmax_dtype)
        return list(logprobs), self._cache_from([(k[:, :, :common], v[:, :, :common]) for k, v in layers])

    def _score_answers(self, group: Group, first: torch.Tensor, cache, max_rows: int):
        """``(logprob, is_greedy)`` of every answer of ``group``: its first token from the context's last
        position, the rest from one batched pass per chunk of answers on copies of the context's cache."""
        answers = [tokens for _, tokens in group.choices]
        lengths = [len(tokens) for tokens in answers]
        per_row = sum(k.nelement() * k.element_size() + v.nelement() * v.element_size() for k, v in self._layers(cache))
        per_row = per_row * (len(group.context) + max(lengths)) // max(1, len(group.context))
        rows_cap = max(1, min(max_rows, self.kv_cache_bytes // max(1, per_row)))
        greedy_first = int(first.argmax())
        scores = [[first[tokens[0]].reshape(1)] for tokens in answers]  # each answer's token log-probs
        greedy = [greedy_first == tokens[0] for tokens in answers]
        layers = self._layers(cache)
        for rows in rows_per_pass(lengths, rows_cap):
            width = lengths[rows[0]] - 1
            pad = answers[rows[0]][0]  # any id: padding sits after every real position, which never attend to it
            ids = torch.tensor([list(answers[i][:-1]) + [pad] * (width - lengths[i] + 1) for i in rows],
                               dtype=torch.long, device=self.device)
            copies = self._cache_from([(k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1)) for k, v in layers])
            logits, _ = self._forward(ids, copies)
            logprobs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
            for row, i in enumerate(rows):
                n = lengths[i] - 1
                target = torch.tensor(answers[i][1:], dtype=torch.long, device=self.device)
                scored = logprobs[row, :n]
                scores[i].append(scored.gather(-1, target.unsqueeze(-1)).squeeze(-1).to(first.device))
                greedy[i] = greedy[i] and bool((scored.argmax(-1) == target).all())
        return [(sum_logprobs(torch.cat(s), self.logprob_sum), g) for s, g in zip(scores, greedy)]

    # ------------------------------------------------------------------ transformers' cache, by its public API
    @property
    def _cache_argument(self) -> str:
        """transformers 5 renamed ``past_key_values`` to ``cache`` (5.24 still accepts the old name)."""
        if not hasattr(self, "_cache_kwarg"):
            self._cache_kwarg = "cache" if "cache" in self._forward_parameters() else "past_key_values"
        return self._cache_kwarg

    @property
    def _keeps_logits(self) -> bool:
        """The model can compute the last position's logits alone (``logits_to_keep``)."""
        return "logits_to_keep" in self._forward_parameters()

    def _forward_parameters(self):
        model = self.model
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        return inspect.signature(inner.forward).parameters

    @staticmethod
    def _layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer[0], layer[1]) for layer in cache]

    @staticmethod
    def _cache_from(layers: list[tuple[torch.Tensor, torch.Tensor]]):
        from transformers import DynamicCache

        return DynamicCache(layers)
