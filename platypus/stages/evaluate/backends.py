"""Which lm-eval model class evaluates a model, on which device, in which dtype and batch size.

``eval.backend`` (conf/eval/backend/): a :class:`Backend` plug-in (platypus/plugins.py) naming an lm-eval model
class by its registry name (``model``), so any registered class works. Shipped: ``prefix`` (ours,
platypus/stages/evaluate/prefix.py, registered as ``hf-prefix``: HFLM computing each shared context once; the
default), ``hf`` (lm-eval's HFLM, for parity checks) and ``vllm`` (lm-eval's vLLM backend, CUDA).
A model is a folder or hub id (+ an adapter folder, applied through lm-eval's ``peft=``) or a model
already in memory; its identity (file hashes, or a digest of its weights) keys the result cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping

from omegaconf import DictConfig, OmegaConf

from platypus.fields import Dtype, Precision, choice_message
from platypus.runtime import hardware
from platypus.runtime.identity import identity
from platypus.runtime.errors import PlatypusError
from platypus.stages.evaluate.prefix_schedule import PREFIX_NAME


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate: a folder or hub id (+ an adapter folder), or a model already in memory."""

    label: str
    pretrained: str  # model folder or hub id; for an in-memory model, a name for logs and results
    peft: str | None = None  # adapter folder, applied by HFLM(peft=...)
    dtype: str | None = None  # overrides eval.dtype
    # (model, tokenizer) already loaded, e.g. just merged in a notebook: evaluated as they are (their own
    # dtype and device), results keyed on a digest of their weights, config and vocabulary.
    loaded: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)

    def describe(self, dtype: str) -> dict[str, Any]:
        return {"label": self.label, "pretrained": self.pretrained, "peft": self.peft, "dtype": dtype,
                "in_memory": self.loaded is not None}


def plain_config(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if isinstance(cfg, DictConfig) else cfg


def resolve_device(eval_cfg: Mapping[str, Any]) -> str:
    """``eval.device``: ``auto`` is ``cuda`` when this process sees a CUDA GPU, else ``cpu``; anything else as given."""
    import torch

    device = str(eval_cfg.get("device", "auto"))
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str, device: str) -> str:
    """``auto`` becomes the dtype fast on this device; results record (and are keyed on) the resolved one."""
    if name == Precision.auto:  # device: eval.device, "auto" included
        return hardware.fast_precision(resolve_device({"device": device}).startswith("cuda")).value
    if name not in Dtype.names():  # a Python caller's EvalModel.dtype (the config's is checked at composition)
        raise PlatypusError(choice_message("eval.dtype", name, Precision))
    return Dtype(name).value


def resolve_batch_size(eval_cfg: Mapping[str, Any]) -> int | str:
    """``eval.batch_size``: a positive integer, or ``auto``: lm-eval's largest-that-fits search on CUDA (vLLM
    batches by itself), and 1 elsewhere (the prefix scorer then scores as many answers per pass as
    ``eval.kv_cache_gb`` allows; an explicit number also caps those). lm-eval's search halves the batch on CUDA out-of-memory errors, which
    a CPU never raises: the process is killed instead (SmolLM2-135M at 25-shot grew to 23 GiB and was
    OOM-killed on a 24 GiB machine). On a 2-core CPU batch 1 was also the fastest for the v1 suite's long
    few-shot prompts: ARC 25-shot 46.7 s vs 55.3 s at batch 8, 1.9 vs 7.0 GB peak RSS (short 0-shot prompts
    gain from batching: the whole ARC at 0-shot took 387 s at batch 1, 218 s at 8)."""
    value = eval_cfg["batch_size"]
    text = str(value)
    if text == "auto" or text.startswith("auto:"):
        gpu = isinstance(eval_backend(eval_cfg), VllmBackend) or resolve_device(eval_cfg).startswith("cuda")
        return text if gpu else 1
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise PlatypusError(f"eval.batch_size={value!r}: use a positive integer, or 'auto' (1 on CPU, the largest "
                        f"batch that fits on CUDA).")


def model_identity(model: EvalModel) -> dict[str, Any]:
    """The model's (and adapter's) identity as manifests record it: file hashes, or hub id + revision;
    for a model in memory, a digest of what it computes with."""
    if model.loaded is not None:
        return {"in_memory": in_memory_digest(*model.loaded)}
    found: dict[str, Any] = {}
    for role, where in (("pretrained", model.pretrained), ("peft", model.peft)):
        if where is not None:
            folder = Path(where).expanduser()
            found[role] = identity(folder.resolve() if folder.is_dir() else where)
    return found


def in_memory_digest(net, tokenizer) -> str:
    """sha256 over the config, every parameter and buffer (name, dtype, shape, bytes) and the vocabulary."""
    import torch

    digest = hashlib.sha256(json.dumps(net.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


def model_dtype(model: EvalModel, eval_cfg: Mapping[str, Any]) -> str:
    """The dtype the model is evaluated in: an in-memory model's own, else eval.dtype (or the model's override)."""
    if model.loaded is not None:
        return str(next(model.loaded[0].parameters()).dtype).removeprefix("torch.")
    return resolve_dtype(model.dtype or eval_cfg["dtype"], resolve_device(eval_cfg))


@dataclass
class Backend:
    """An lm-eval model class by its registry name (``lm_eval.api.registry``), given the model folder or the
    model in memory, ``eval.dtype``, ``eval.batch_size``, ``eval.device``, ``eval.parallelize`` and
    ``eval.add_bos_token``; ``model_args``: further keyword arguments for that class."""

    model: str = "hf"
    model_args: Dict[str, Any] = field(default_factory=dict)

    def lm_class(self) -> type:
        import lm_eval.api.registry as registry

        import platypus.stages.evaluate.prefix  # noqa: F401 - registers hf-prefix

        try:
            return registry.get_model(self.model)
        except ValueError:
            raise PlatypusError(f"eval.backend.model={self.model!r}: lm-eval has no model class by that name. "
                                f"Registered: {', '.join(sorted(registry.model_registry.keys()))}.") from None

    def check(self) -> None:
        """Before any stage runs: the registry name exists (the prefix scorer is ours: nothing to look up)."""
        if self.model != PREFIX_NAME:
            self.lm_class()

    def arguments(self, eval_cfg: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments beyond the model, dtype, batch size and device."""
        return {**bos_setting(eval_cfg), **self.model_args}

    def load(self, model: EvalModel, dtype: str, eval_cfg: Mapping[str, Any]):
        cls, extra = self.lm_class(), self.arguments(eval_cfg)
        if model.loaded is not None:
            net, tokenizer = model.loaded
            return cls(pretrained=net, tokenizer=tokenizer, batch_size=resolve_batch_size(eval_cfg), **extra)
        if eval_cfg.get("parallelize"):  # device_map=auto over every visible GPU (a 70B model in fp16)
            extra["parallelize"] = True
        return cls(pretrained=model.pretrained, peft=model.peft, dtype=dtype, batch_size=resolve_batch_size(eval_cfg),
                   device=resolve_device(eval_cfg), **extra)

    def key(self) -> dict[str, Any]:
        """What results record, and the result cache keys on: every parameter (``model_args`` when given)."""
        found = dataclasses.asdict(self)
        return found if found.pop("model_args") == {} else {**found, "model_args": self.model_args}


@dataclass
class PrefixBackend(Backend):
    """Ours: HFLM computing each shared context once, with ``eval.kv_cache_gb`` and ``eval.logprob_sum``; an
    explicit ``eval.batch_size`` also caps the answers scored per pass."""

    model: str = PREFIX_NAME

    def arguments(self, eval_cfg: Mapping[str, Any]) -> dict[str, Any]:
        explicit = str(eval_cfg["batch_size"]).isdigit()
        return {**super().arguments(eval_cfg), "kv_cache_gb": eval_cfg["kv_cache_gb"],
                "logprob_sum": eval_cfg["logprob_sum"],
                "answers_per_pass": int(eval_cfg["batch_size"]) if explicit else None}


@dataclass
class VllmBackend(Backend):
    """lm-eval's vLLM backend: same tasks and metrics, much faster on GPUs. It batches by itself; an adapter is
    applied by vLLM's LoRA support (``lora_local_path``); ``eval.parallelize`` is tensor parallelism."""

    model: str = "vllm"

    def check(self) -> None:
        """Nothing to look up: :meth:`load` says what is missing (vLLM, a CUDA GPU) where it is needed."""

    def load(self, model: EvalModel, dtype: str, eval_cfg: Mapping[str, Any]):
        import importlib.util

        import torch

        if model.loaded is not None:
            raise PlatypusError(f"Model '{model.label}' is in memory, and eval/backend=vllm loads models from folders: "
                                f"save it with save_pretrained() and pass the folder, or use eval/backend=prefix.")
        if importlib.util.find_spec("vllm") is None:
            raise PlatypusError("eval/backend=vllm needs vLLM: `pip install 'lm-eval[vllm]'` on a CUDA machine, "
                                "or use eval/backend=prefix.")
        if not torch.cuda.is_available():
            raise PlatypusError("eval/backend=vllm needs a CUDA GPU; this machine has none. Use eval/backend=prefix.")
        # eval.parallelize: the model split over every visible GPU, as tensor parallelism (a 70B model in fp16)
        gpus = torch.cuda.device_count() if eval_cfg.get("parallelize") else 1
        kwargs: dict[str, Any] = {"pretrained": model.pretrained, "dtype": dtype, "tensor_parallel_size": gpus,
                                  "batch_size": resolve_batch_size(eval_cfg), **self.arguments(eval_cfg)}
        if model.peft:
            rank = json.loads((Path(model.peft) / "adapter_config.json").read_text())["r"]
            kwargs |= {"lora_local_path": model.peft, "max_lora_rank": max(16, int(rank))}
        return self.lm_class()(**kwargs)


def eval_backend(eval_cfg: Mapping[str, Any]) -> Backend:
    """``eval.backend`` built (a bad one is one paragraph naming ``eval.backend.<key>``); none given: the prefix scorer."""
    from platypus.plugins import build

    node = eval_cfg.get("backend")
    if isinstance(node, Backend):
        return node
    return PrefixBackend() if node is None else build(node, Backend, "eval.backend")


def scores_shared_contexts(eval_cfg: Mapping[str, Any]) -> bool:
    """Whether ``eval.backend`` is the prefix scorer (its cost is the tokens it computes, and it counts them)."""
    return eval_backend(eval_cfg).model == PREFIX_NAME


def load_lm(model: EvalModel, dtype: str, eval_cfg: Mapping[str, Any]):
    """The lm-eval model ``eval.backend`` loads; a separate function so tests can observe loads."""
    return eval_backend(eval_cfg).load(model, dtype, eval_cfg)


def bos_setting(eval_cfg: Mapping[str, Any]) -> dict[str, bool]:
    """lm-eval's ``add_bos_token``, when ``eval.add_bos_token`` sets it (null: the tokenizer decides)."""
    value = eval_cfg.get("add_bos_token")
    return {} if value is None else {"add_bos_token": bool(value)}


def release(lm) -> None:
    """Free a loaded model before the next one loads. A vLLM engine keeps its GPU memory (and worker processes)
    after ``del``: it is shut down with vLLM's own API first."""
    import gc

    import torch

    if type(lm).__module__ == "lm_eval.models.vllm_causallms" and hasattr(lm, "model"):
        engine = lm.model
        if hasattr(engine, "shutdown"):  # LLM.shutdown() in newer vLLM releases
            engine.shutdown()
        del lm.model, engine
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    del lm
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
