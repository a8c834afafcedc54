"""The train stage: a curated JSONL in, a LoRA adapter (PEFT folder) out."""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path

from platypus.runtime import models
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import file_sha256, identity, to_plain
from platypus.fields import Role
from platypus.stages import made_in_run
from platypus.stages.base import Artifact, Stage
from platypus.stages.train import settings, trainer


@dataclass
class TrainStage(Stage):
    sections = ("model", "lora", "train", "seed")
    produces = {Artifact.adapter: Artifact.adapter.value}  # the adapter folder is named after the artifact
    distributed = True

    def check(self, cfg) -> None:
        models.check_quantization(cfg.model.quantization)  # QLoRA: CUDA + bitsandbytes, before curate runs
        settings.check_settings(cfg.train, cfg.lora)
        if cfg.train.dataset and not made_in_run(cfg, Artifact.dataset) and not Path(cfg.train.dataset).is_file():
            raise PlatypusError(
                f"train.dataset={cfg.train.dataset!r}: no such file. Give a curated JSONL (e.g. "
                f"<run>/curate/train.jsonl), or add curate to stages and leave train.dataset=null."
            )
        models.check_target_modules(models.base_skeleton(cfg), list(cfg.lora.target_modules))

    def config(self, cfg) -> dict:
        return {"model": cfg.model, "lora": cfg.lora, "train": {**to_plain(cfg.train), "dataset": None}, "seed": cfg.seed}

    def inputs(self, cfg, found, run) -> dict:
        explicit = cfg.train.dataset and not made_in_run(cfg, Artifact.dataset)
        dataset = Path(cfg.train.dataset) if explicit else found.get(Artifact.dataset)
        if dataset is None:
            raise PlatypusError(
                "stages: 'train' needs a curated dataset. Add curate to stages, or give train.dataset=<file.jsonl>."
            )
        if not dataset.is_file():
            raise PlatypusError(f"train.dataset={str(dataset)!r}: no such file.")
        return {"dataset": dataset, Role.base.value: models.base_model(cfg)}

    def identity(self, cfg, inputs) -> dict:
        return {"dataset": {"path": str(inputs["dataset"]), "sha256": file_sha256(inputs["dataset"])},
                "base_model": identity(inputs[Role.base.value])}

    def run(self, cfg, inputs, out: Path, run) -> dict:
        return trainer.train(cfg.train, cfg.lora, cfg.model, inputs[Role.base.value], inputs["dataset"], out, cfg.seed,
                     run.tracker.report_to)

    def log(self, run, folder: Path, manifest: dict) -> None:
        run.tracker.log({f"train/{k}": v for k, v in manifest["metrics"].items() if isinstance(v, (int, float))})
        run.tracker.image("train/loss_curve", folder / "loss.png")

    def summary_row(self, folder: Path, manifest: dict) -> dict:
        metrics = manifest.get("metrics", {})
        return {"train_loss": metrics.get("loss"), "train_steps": metrics.get("steps")}

    def plan(self, cfg, model, made):
        from platypus.stages.train.plan import plan_training

        return plan_training(cfg, model)
