"""eval=leaderboard_v1 scores the token sequences the v1 leaderboard's harness (lm-eval b281b09,
``hf-causal-experimental``) built: no BOS, context and answer split as its ``_encode_pair`` did. Checked with a
tiny Llama-style tokenizer built here (it prepends BOS by default and a "▁" to every string, as Llama's does) on
ARC, HellaSwag, MMLU and TruthfulQA documents, through our scorer and lm-eval's HFLM."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from platypus.stages.evaluate.backends import EvalModel, load_lm
from platypus.stages.evaluate.tasks import build_suite
from tests.helpers import compose_config

TASKS = {"arc_challenge": 25, "hellaswag": 10, "mmlu_anatomy": 5, "truthfulqa_mc2": 0}


@pytest.fixture(scope="module")
def llama_style(tmp_path_factory):
    """A byte-fallback BPE trained on a few sentences, Llama's normaliser ("▁" for spaces, one prepended) and a
    post-processor that puts <s> first: ``encode`` adds BOS unless told not to, like LlamaTokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    text = ["Question: Which of these is a mammal? Answer: the whale", "The following are multiple choice questions",
            "Q: What is the capital of France? A: Paris is the capital.", "A man is sitting on a roof. He starts"] * 50
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                                      initial_alphabet=list("▁abcdefghijklmnopqrstuvwxyz")))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    folder = tmp_path_factory.mktemp("llama_style")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, bos_token_id=1, eos_token_id=2,
                         max_position_embeddings=8192)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert tokenizer.encode("Paris")[0] == tokenizer.bos_token_id, "Llama-style: BOS by default"
    return folder, tokenizer


def b281b09_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm_eval/base.py ``BaseLM._encode_pair`` at b281b09 with ``AutoCausalLM.tok_encode``
    (``tokenizer.encode(string, add_special_tokens=False)``): trailing spaces move to the answer, the whole
    string is encoded once and the context's length cut from it."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    return context_ids, whole[len(context_ids):]


@pytest.fixture(scope="module")
def instances(tmp_path_factory, cache_dir):
    """lm-eval's requests for 2 documents of each task at its v1 few-shot count (built once: contexts are text)."""
    cfg = compose_config("eval=leaderboard_v1", "benchmarks=bundled")
    suite = build_suite(cfg.eval, cfg.benchmarks, tmp_path_factory.mktemp("tasks"), cache_dir)
    built = []
    for name, task in suite.task_manager().load(list(TASKS))["tasks"].items():
        task.set_config(key="num_fewshot", value=TASKS[name])
        task.set_fewshot_seed(1234)
        task.build_all_requests(limit=2, rank=0, world_size=1)
        built += task.instances
    return built

CLASSES = {"prefix": "PrefixBackend", "hf": "Backend"}


def scored_ids(folder, eval_cfg, instances, backend: str) -> list[tuple]:
    """What the backend is asked to score for those requests: ((context, answer), context ids, answer ids). The
    model is not run (scoring the ids is the scorer tests' subject)."""
    with open_dict(eval_cfg):
        eval_cfg.backend = {"_target_": f"platypus.stages.evaluate.backends.{CLASSES[backend]}"}
    lm = load_lm(EvalModel("m", str(folder)), "float32", OmegaConf.to_container(eval_cfg))
    seen = []

    def spy(requests, *args, **kwargs):
        seen.extend(requests)
        return [(0.0, True)] * len(requests)

    lm._loglikelihood_tokens = spy
    lm.loglikelihood(list(instances))
    return seen


@pytest.mark.parametrize("backend", ["prefix", "hf"])
def test_leaderboard_v1_scores_b281b09_token_ids(llama_style, instances, backend):
    folder, tokenizer = llama_style
    cfg = compose_config("eval=leaderboard_v1", "benchmarks=bundled")
    assert cfg.eval.add_bos_token is False
    requests = scored_ids(folder, cfg.eval, instances, backend)
    assert len(requests) == len(instances) >= 2 * (4 + 4 + 4 + 2), "every task's answers were scored"
    for (context, continuation), context_ids, answer_ids in requests:
        assert context_ids[0] != tokenizer.bos_token_id
        assert (list(context_ids), list(answer_ids)) == b281b09_pair(tokenizer, context, continuation), context[-80:]

    # The tokenizer's own choice (lm-eval 0.4 with add_bos_token unset) puts BOS first: the setting has teeth.
    with open_dict(cfg):
        cfg.eval.add_bos_token = None
    unset = scored_ids(folder, cfg.eval, instances, backend)
    assert all(context_ids[0] == tokenizer.bos_token_id for _, context_ids, _ in unset)
