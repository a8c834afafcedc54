"""train.loss_average=token vs sequence on the embedded default (SmolLM2-135M, the bundled Open-Platypus sample):
the same curated rows, steps and seed; held-out loss on bundled rows the run never saw, and the quick suite with
the sequence adapter's merged model compared to the token one's, paired per document.

    python benchmarks/bench_loss_average.py --steps 36 --out /tmp/loss_average

Each training is the pipeline's own default run (``python run.py train.loss_average=...``); the stage cache shares
the curated set and the base model's evaluation between them. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import torch

from platypus.resources import DATASETS

REPO = Path(__file__).resolve().parents[1]
RAW = DATASETS / "open_platypus_raw.jsonl.gz"  # what data=open_platypus_rebuild reads


def run(*overrides: str) -> None:
    command = [sys.executable, "run.py", "logger=none", *overrides]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def held_out(train_rows: Path, count: int, seed: int) -> list[dict]:
    seen = {json.loads(line)["instruction"] for line in train_rows.read_text().splitlines() if line.strip()}
    with gzip.open(RAW, "rt", encoding="utf-8") as handle:
        rows = [r for r in map(json.loads, handle) if r["instruction"] not in seen]
    return random.Random(seed).sample(rows, count)


def example_losses(base: str, adapter: Path, rows: list[dict], cutoff: int) -> list[tuple[float, int]]:
    """(token-mean loss, completion tokens) per row: the train stage's Alpaca prompt, loss on the answer + EOS."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from platypus.stages.train.prompts import to_prompt_completion

    tokenizer = AutoTokenizer.from_pretrained(base)
    net = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter).eval()
    out = []
    with torch.no_grad():
        for pair in to_prompt_completion(rows, "alpaca"):
            prompt = tokenizer(pair["prompt"])["input_ids"]
            answer = tokenizer(pair["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            ids = torch.tensor([(prompt + answer)[:cutoff]])
            labels = ids.clone()
            labels[0, :len(prompt)] = -100
            n = int((labels[0, 1:] != -100).sum())
            if n:
                out.append((net(input_ids=ids, labels=labels).loss.item(), n))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=36)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("/tmp/loss_average"))
    args = parser.parse_args()
    folders = {average: args.out / average for average in ("token", "sequence")}
    for average, folder in folders.items():
        if not (folder / "merge" / "manifest.json").is_file():  # a rerun keeps finished trainings
            run(f"train.loss_average={average}", f"train.max_steps={args.steps}", f"hydra.run.dir={folder}")
    merged = [str(folders[a] / "merge" / "model") for a in ("token", "sequence")]
    run("stages=[evaluate]", f"evaluate.models=[{','.join(merged)}]", f"hydra.run.dir={args.out / 'compare'}")

    base = json.loads((folders["token"] / "train" / "manifest.json").read_text())["inputs"]["base_model"]["path"]
    rows = held_out(folders["token"] / "curate" / "train.jsonl", args.held_out, seed=0)
    print(f"\nheld-out: {len(rows)} bundled rows not in the curated training set (seed 0)\n")
    print("| loss_average | train loss (last) | held-out loss, token mean | held-out loss, mean of example means |")
    print("|---|---|---|---|")
    for average, folder in folders.items():
        metrics = json.loads((folder / "train" / "manifest.json").read_text())["metrics"]
        losses = example_losses(base, folder / "train" / "adapter", rows, cutoff=512)
        pooled = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
        means = sum(loss for loss, _ in losses) / len(losses)
        print(f"| {average} | {metrics['loss']:.4f} | {pooled:.4f} | {means:.4f} |")
    print(f"\nquick suite, sequence vs token (paired): {args.out / 'compare' / 'evaluate' / 'table.md'}")
    print((args.out / "compare" / "evaluate" / "table.md").read_text())


if __name__ == "__main__":
    main()
