"""The shared-prefix scorer (platypus/stages/evaluate/prefix.py) returns what lm-eval's HFLM returns.

On the tiny random Llama, request by request: token-level requests built to hit every path (left
truncation past the model's max length, answers of one and of several tokens under one context, contexts
sharing prefixes across documents, answers the model predicts greedily, duplicates), text requests through
lm-eval's tokenization (a continuation that tokenizes differently when joined, trailing spaces, an empty
context), chunked answer batches, an adapter through ``peft=``, a model in memory, bf16. The real SmolLM2
on the four leaderboard tasks is in tests/test_prefix_scorer_smollm2.py.
"""

from __future__ import annotations

import random

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from platypus.stages.evaluate.prefix import PrefixLM
from platypus.stages.evaluate.prefix_schedule import (
    count_tokens,
    group_requests,
    model_input,
    passes,
    reused_tokens,
    rows_per_pass,
    shared_prefix,
)

MAX_LENGTH = 48


def instances(pairs: list[tuple[str, str]]) -> list[Instance]:
    return [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]


def assert_same(ours: list[tuple[float, bool]], theirs: list[tuple[float, bool]], tol: float = 1e-4) -> None:
    assert len(ours) == len(theirs)
    for i, ((a, ga), (b, gb)) in enumerate(zip(ours, theirs)):
        assert a == pytest.approx(b, abs=tol), (i, a, b)
        assert ga == gb, (i, ga, gb)


# --------------------------------------------------------------------------- scheduling, no model
def test_model_input_is_hflms_left_truncated_window():
    assert model_input([1, 2, 3], [4, 5], max_length=10) == [1, 2, 3, 4]
    assert model_input([1, 2, 3, 4, 5, 6], [7, 8], max_length=4) == [4, 5, 6, 7]  # last 5 tokens, minus the last


def test_groups_share_contexts_and_are_sorted_by_their_tokens():
    requests = [(("b", "x"), [5, 6], [7]), (("a", "y"), [1, 2], [3, 4]), (("b", "z"), [5, 6], [8, 9])]
    groups = group_requests(requests, max_length=100)
    assert [g.context for g in groups] == [(1, 2), (5, 6)]
    assert groups[1].choices == [(0, (7,)), (2, (8, 9))]


def test_truncated_requests_group_by_the_context_they_actually_see():
    """Past max_length, answers of different lengths cut the context differently: separate groups."""
    context = list(range(1, 11))
    requests = [(("c", "a"), context, [20]), (("c", "b"), context, [21, 22, 23])]
    groups = group_requests(requests, max_length=8)
    assert [g.context for g in groups] == [tuple(range(3, 11)), tuple(range(5, 11))]


def test_reuse_keeps_the_last_context_token_computed():
    assert shared_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert reused_tokens([1, 2, 3], [1, 2, 3]) == 2  # the same context again: its last token still runs
    assert reused_tokens([1, 2, 3, 4], [1, 2]) == 1


def test_answer_rows_skip_single_tokens_and_respect_the_cap():
    assert list(rows_per_pass([1, 3, 2, 5], max_rows=2)) == [[3, 1], [2]]
    assert list(rows_per_pass([1, 1], max_rows=8)) == []


def test_token_counts_share_the_header_and_the_contexts():
    header = list(range(100, 140))
    requests = [((f"q{q}", f"a{a}"), header + [q, q], [a, 7]) for q in range(3) for a in range(4)]
    counts = count_tokens(requests, max_length=1000)
    assert counts.requests == 12 and counts.contexts == 3 and counts.common == 40
    assert counts.requested == 12 * 43
    assert counts.computed == 42 + 4 * 1 + 2 * (2 + 4 * 1)  # header once; each question's tokens; answers


# --------------------------------------------------------------------------- tiny model, token level
@pytest.fixture(scope="module")
def scorers(tiny_model_dir):
    kwargs = dict(pretrained=str(tiny_model_dir), dtype="float32", device="cpu", max_length=MAX_LENGTH)
    return HFLM(batch_size=4, **kwargs), PrefixLM(batch_size=3, answers_per_pass=3, **kwargs)  # answers in chunks of 3


def token_requests(model) -> list:
    """Documents with a shared header, several answers each (1 to 6 tokens, one of them the model's own greedy
    continuation), contexts from 3 to past MAX_LENGTH tokens, and one request twice."""
    rng = random.Random(0)
    vocab = model.config.vocab_size
    header = [rng.randrange(vocab) for _ in range(12)]
    requests = []
    for doc in range(6):
        context = header + [rng.randrange(vocab) for _ in range(rng.choice([3, 10, 30, 45]))]
        if doc == 5:
            context = context[:3]  # a short context with no header
        with torch.no_grad():
            greedy = model.generate(torch.tensor([context]), max_new_tokens=4, do_sample=False, min_new_tokens=4)
        answers = [greedy[0, len(context):].tolist(), [rng.randrange(vocab)]]
        answers += [[rng.randrange(vocab) for _ in range(rng.randint(1, 6))] for _ in range(3)]
        requests += [((f"doc{doc}", f"answer{i}"), context, answer) for i, answer in enumerate(answers)]
    return requests + [requests[3]]


def test_token_level_scores_equal_hflm(scorers):
    hf, prefix = scorers
    requests = token_requests(hf.model)
    theirs = hf._loglikelihood_tokens(requests, disable_tqdm=True)
    ours = prefix._loglikelihood_tokens(requests, disable_tqdm=True)
    assert_same(ours, theirs, tol=1e-5)
    assert sum(g for _, g in theirs) >= 3  # the greedy answers were really greedy: is_greedy True is tested
    assert any(len(model_input(c, k, MAX_LENGTH)) < len(c) + len(k) - 1 for _, c, k in requests)  # truncation hit


@pytest.mark.slow
def test_answers_scored_one_per_pass_give_the_same_scores(tiny_model_dir, scorers):
    hf, _ = scorers
    requests = token_requests(hf.model)
    one_row = PrefixLM(pretrained=str(tiny_model_dir), dtype="float32", device="cpu", max_length=MAX_LENGTH,
                       batch_size=8, kv_cache_gb=1e-9)  # the memory budget allows one answer per pass
    assert_same(one_row._loglikelihood_tokens(requests, disable_tqdm=True),
                hf._loglikelihood_tokens(requests, disable_tqdm=True), tol=1e-5)


@pytest.mark.slow
def test_counts_report_the_tokens_computed(scorers):
    hf, prefix = scorers
    requests = token_requests(hf.model)
    before = prefix.counts.computed
    prefix._loglikelihood_tokens(requests, disable_tqdm=True)
    expected = count_tokens(requests, MAX_LENGTH, max_rows=3)
    assert prefix.counts.computed - before == expected.computed < expected.requested
    with prefix.dry_run() as dry:
        assert prefix._loglikelihood_tokens(requests, disable_tqdm=True) == [(0.0, False)] * len(requests)
    assert dry[0].computed == expected.computed and prefix.counts.computed - before == expected.computed


# --------------------------------------------------------------------------- tiny model, text requests
TEXT = [
    ("Question: what is 2+2?\nAnswer:", " 4"),
    ("Question: what is 2+2?\nAnswer:", " four, said the machine"),
    ("Question: what is 2+2?\nAnswer: ", "4"),  # the trailing space moves to the continuation
    ("The price was 12", "34 dollars"),  # joins into other tokens than "34 dollars" alone
    ("The price was 12", ",000 dollars"),
    ("", "An empty context is the prefix token"),
    ("Question: what is 3+3?\nAnswer:", " 6"),
    ("A long context " * 30, " ends here"),  # past MAX_LENGTH: left-truncated
]


def test_text_requests_tokenize_and_score_as_hflm(scorers):
    hf, prefix = scorers
    assert_same(prefix.loglikelihood(instances(TEXT), disable_tqdm=True),
                hf.loglikelihood(instances(TEXT), disable_tqdm=True), tol=1e-5)


def test_rolling_loglikelihood_is_hflms(scorers):
    hf, prefix = scorers
    texts = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=("Some text to score. " * 8,), idx=0)]
    assert prefix.loglikelihood_rolling(texts, disable_tqdm=True) == pytest.approx(
        hf.loglikelihood_rolling(texts, disable_tqdm=True), abs=1e-5)


@pytest.mark.slow
def test_adapter_through_peft_and_model_in_memory(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    net = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_net = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj", "down_proj"],
                                              init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_net.save_pretrained(tmp_path / "adapter")
    kwargs = dict(pretrained=str(tiny_model_dir), peft=str(tmp_path / "adapter"), dtype="float32", device="cpu",
                  max_length=MAX_LENGTH, batch_size=4)
    theirs = HFLM(**kwargs).loglikelihood(instances(TEXT), disable_tqdm=True)
    assert_same(PrefixLM(**kwargs).loglikelihood(instances(TEXT), disable_tqdm=True), theirs, tol=1e-5)
    base = HFLM(**{**kwargs, "peft": None}).loglikelihood(instances(TEXT), disable_tqdm=True)
    assert max(abs(a - b) for (a, _), (b, _) in zip(theirs, base)) > 1e-3  # the adapter really changes the scores

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    in_memory = PrefixLM(pretrained=peft_net.eval(), tokenizer=tokenizer, max_length=MAX_LENGTH, batch_size=4)
    assert_same(in_memory.loglikelihood(instances(TEXT), disable_tqdm=True), theirs, tol=1e-5)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precisions_score_close_to_hflm(tiny_model_dir, dtype):
    """Rounding differs with the shapes of the passes: close, not equal (float32 is the exact reference)."""
    kwargs = dict(pretrained=str(tiny_model_dir), dtype=dtype, device="cpu", max_length=MAX_LENGTH, batch_size=4)
    ours = PrefixLM(**kwargs).loglikelihood(instances(TEXT), disable_tqdm=True)
    theirs = HFLM(**kwargs).loglikelihood(instances(TEXT), disable_tqdm=True)
    scale = max(abs(b) for b, _ in theirs)
    assert max(abs(a - b) for (a, _), (b, _) in zip(ours, theirs)) <= 0.02 * scale


def single_token_requests(model) -> list:
    """MMLU-like: contexts of different lengths after a shared header (one longer than MAX_LENGTH, one sharing
    only part of the header), four one-token answers each, one of them the model's greedy token."""
    rng = random.Random(1)
    vocab = model.config.vocab_size
    header = [rng.randrange(vocab) for _ in range(20)]
    contexts = [header + [rng.randrange(vocab) for _ in range(n)] for n in (2, 9, 5, 31, 60, 14, 3, 7)]
    contexts.append(header[:15] + [rng.randrange(vocab) for _ in range(6)])
    requests = []
    for doc, context in enumerate(contexts):
        with torch.no_grad():
            greedy = int(model(torch.tensor([context[-MAX_LENGTH:]])).logits[0, -1].argmax())
        answers = [[greedy]] + [[rng.randrange(vocab)] for _ in range(3)]
        requests += [((f"doc{doc}", f"answer{i}"), context, answer) for i, answer in enumerate(answers)]
    return requests


def test_single_token_contexts_batched_on_their_shared_prefix_equal_hflm(scorers):
    hf, prefix = scorers  # answers_per_pass=3: batches of at most 3 contexts
    requests = single_token_requests(hf.model)
    steps = list(passes(requests, MAX_LENGTH, 3))
    assert max(len(s.groups) for s in steps) == 3 and len(steps) < 9  # really batched
    before = prefix.counts.computed
    ours = prefix._loglikelihood_tokens(requests, disable_tqdm=True)
    assert_same(ours, hf._loglikelihood_tokens(requests, disable_tqdm=True), tol=1e-5)
    assert sum(g for _, g in ours) >= 8  # every document's greedy answer
    assert prefix.counts.computed - before == count_tokens(requests, MAX_LENGTH, 3, 3).computed


def test_batched_contexts_without_logits_to_keep_equal_hflm(scorers, monkeypatch):
    hf, prefix = scorers
    monkeypatch.setattr(PrefixLM, "_keeps_logits", property(lambda self: False))  # a model without the argument
    requests = single_token_requests(hf.model)
    assert_same(prefix._loglikelihood_tokens(requests, disable_tqdm=True),
                hf._loglikelihood_tokens(requests, disable_tqdm=True), tol=1e-5)
