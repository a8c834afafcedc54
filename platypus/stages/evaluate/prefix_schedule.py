"""The shared-prefix scorer's plan, without a model: which contexts run in which forward pass, and what that
computes (the scorer's statistics and ``evaluate.plan``'s cost model). The scorer: platypus/stages/evaluate/prefix.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

PREFIX_NAME = "hf-prefix"  # lm-eval's registry name of the scorer (eval.backend.model; prefix.py registers it)

BATCH_SLACK = 8  # tokens of reuse a context may give up to join a batch of single-token contexts
CONTEXTS_PER_PASS = 16  # at most this many such contexts per batch (fewer when kv_cache_gb would be exceeded)

# One request as TemplateLM.loglikelihood hands it over: ((context, continuation), context ids, continuation ids).
Request = tuple[tuple[str, str] | None, Sequence[int], Sequence[int]]


@dataclass
class Group:
    """Requests whose scored tokens follow the same context: it is computed once for all of them."""

    context: tuple[int, ...]  # the tokens up to and including the one whose logits score the first answer token
    choices: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # (request index, answer tokens)


def model_input(context: Sequence[int], continuation: Sequence[int], max_length: int) -> list[int]:
    """What HFLM feeds the model for one request: context + answer, left-truncated to ``max_length + 1``
    tokens, without the last answer token."""
    return (list(context) + list(continuation))[-(max_length + 1):][:-1]


def group_requests(requests: Sequence[Request], max_length: int) -> list[Group]:
    """Requests grouped by their (truncated) context, groups sorted by its tokens so shared prefixes are adjacent."""
    groups: dict[tuple[int, ...], Group] = {}
    for index, (_, context, continuation) in enumerate(requests):
        tokens = model_input(context, continuation, max_length)
        key = tuple(tokens[: len(tokens) - len(continuation) + 1])
        groups.setdefault(key, Group(key)).choices.append((index, tuple(continuation)))
    return [groups[key] for key in sorted(groups)]


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def reused_tokens(previous: Sequence[int], context: Sequence[int]) -> int:
    """Tokens of ``context`` taken from the previous context's cache: at least its last token is computed,
    since its logits score the first answer token."""
    return min(shared_prefix(previous, context), len(context) - 1)


@dataclass
class Pass:
    """One forward pass over contexts: ``groups`` (several only when every answer of each is one token), the
    first ``reuse`` tokens taken from the previous pass's cache and the first ``common`` shared by all of them."""

    groups: list[Group]
    reuse: int
    common: int

    def computed(self) -> int:
        """Context tokens this pass runs: the shared part once, then each context's rest."""
        if len(self.groups) == 1:
            return len(self.groups[0].context) - self.reuse
        return max(0, self.common - self.reuse) + sum(len(g.context) - self.common for g in self.groups)


def _single(group: Group) -> bool:
    return all(len(tokens) == 1 for _, tokens in group.choices)


def _runs(groups: list[Group]) -> Iterator[tuple[list[Group], int]]:
    """Neighbouring groups in ``groups`` (sorted) that can share one prefix, with its length: a group with a
    longer answer runs alone; single-token groups join while their shared prefix is at least half of each context
    and loses at most ``BATCH_SLACK`` of the tokens each would have reused from its predecessor."""
    run: list[Group] = []
    common = most_reused = 0
    for group in groups:
        if run and _single(group) and _single(run[0]):
            joined = min(common, shared_prefix(run[0].context, group.context), len(group.context) - 1)
            reuse = reused_tokens(run[-1].context, group.context)
            if joined >= max(most_reused, reuse) - BATCH_SLACK and 2 * joined >= len(group.context):
                run.append(group)
                common, most_reused = joined, max(most_reused, reuse)
                continue
        if run:
            yield run, common
        run, common, most_reused = [group], len(group.context) - 1, 0
    if run:
        yield run, common


def passes(requests: Sequence[Request], max_length: int, max_rows: int = CONTEXTS_PER_PASS) -> Iterator[Pass]:
    """The forward passes over the contexts of ``requests``, in scoring order (see the module docstring, 3 and 5).
    A run of single-token contexts is cut into batches of at most ``max_rows``; every pass reuses what it shares
    with the tokens whose cache the previous pass left (a context, or a batch's shared prefix)."""
    cached: tuple[int, ...] = ()
    for run, common in _runs(group_requests(requests, max_length)):
        for start in range(0, len(run), max_rows):
            batch = run[start: start + max_rows]
            reuse = reused_tokens(cached, batch[0].context) if cached else 0
            yield Pass(batch, reuse, common if len(batch) > 1 else reuse)
            cached = batch[0].context[:common] if len(batch) > 1 else batch[0].context


def rows_per_pass(lengths: Sequence[int], max_rows: int) -> Iterator[list[int]]:
    """Indices of answers (those of 2+ tokens) scored together on a context's cache, longest first so that
    each batch pads little."""
    longer = sorted((i for i, n in enumerate(lengths) if n > 1), key=lambda i: -lengths[i])
    for start in range(0, len(longer), max_rows):
        yield longer[start: start + max_rows]


@dataclass
class TokenCounts:
    """Tokens of every request's whole input (``requested``), tokens lm-eval's HFLM runs (``hflm``: it computes
    a context once only when all its answers are one token) and tokens this scorer runs (``computed``);
    ``common``: the prefix shared by every context of the call (computed once)."""

    requests: int = 0
    requested: int = 0
    hflm: int = 0
    computed: int = 0
    contexts: int = 0
    common: int = 0

    def add(self, other: "TokenCounts") -> None:
        for name in ("requests", "requested", "hflm", "computed", "contexts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def count_tokens(requests: Sequence[Request], max_length: int, max_rows: int = 1 << 30,
                 context_rows: int = CONTEXTS_PER_PASS) -> TokenCounts:
    """What scoring ``requests`` in one call computes, without a model: the scorer's statistics and the
    cost model of ``evaluate.plan`` (``max_rows`` answers, ``context_rows`` contexts per pass at most)."""
    counts = TokenCounts(requests=len(requests))
    inputs = {tuple(c) + tuple(k[:-1]): len(model_input(c, k, max_length)) for _, c, k in requests}  # HFLM's groups
    counts.requested = sum(len(model_input(c, k, max_length)) for _, c, k in requests)
    counts.hflm = sum(inputs.values())
    first = None
    for step in passes(requests, max_length, context_rows):
        counts.computed += step.computed()
        for group in step.groups:
            first = group.context if first is None else first
            counts.common = shared_prefix(first, group.context) if counts.contexts else len(group.context)
            counts.contexts += 1
            lengths = [len(tokens) for _, tokens in group.choices]
            counts.computed += sum(len(rows) * (lengths[rows[0]] - 1) for rows in rows_per_pass(lengths, max_rows))
    return counts
