"""The run: check everything, then each stage of ``cfg.stages`` in order, wiring each one's artifacts to the next.

The stages themselves are ``platypus/stages/<name>/stage.py`` (the contract: platypus/stages/base.py); the run
folder, manifests, reuse and the stage cache are ``platypus/runtime/run.py``.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from platypus import stages
from platypus.config import RootConfig
from platypus.fields import validate
from platypus.runtime import tracking
from platypus.runtime.errors import PlatypusError, fail
from platypus.runtime.failures import message, write_failure
from platypus.runtime.lock import exclusive
from platypus.runtime.run import Run, process_rank, world_size
from platypus.stages import Artifacts


def check_stages(cfg: DictConfig) -> None:
    names, order = list(cfg.stages), stages.known(cfg)
    unknown = [s for s in names if s not in order]
    if unknown:
        raise PlatypusError(f"stages={names}: unknown stage(s) {unknown}; valid stages are {order} (stage_classes).")
    if len(set(names)) != len(names) or names != sorted(names, key=order.index):
        raise PlatypusError(f"stages={names}: stages run in the order {order}, each at most once; e.g. "
                            f"stages=[{','.join(order[1:3])}].")


def check_config(cfg: DictConfig) -> None:
    """Everything that can be checked before any stage works: the stage list, the schema's choices and ranges,
    and each selected stage's own check (its settings and the inputs its config names, nothing loaded)."""
    check_stages(cfg)
    validate(cfg, RootConfig)
    tracking.build_tracker(cfg.logger)
    for name in cfg.stages:
        stages.get(cfg, name).check(cfg)


class CheckConfig(Callback):
    """The composed job checks itself before Hydra makes its run folder (a sweep: its shared settings before the
    first job, each job's own values when the job starts): one paragraph and exit code 2."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        if config.get("plan"):  # a plan for a GPU run is asked for on a machine without one
            return
        try:
            check_config(config)
        except PlatypusError as error:
            fail(str(error), bool(config.get("traceback")))


def found_in(run: Run) -> Artifacts:
    """The artifacts of the stages this run folder finished earlier (and does not run again now)."""
    found: Artifacts = {}
    for name in stages.known(run.cfg):
        folder = run.finished(name)
        if folder and name not in run.cfg.stages:
            found.update(stages.get(run.cfg, name).outputs(folder))
    return found


def run_pipeline(cfg: DictConfig, root: Path) -> float | None:
    """Run ``cfg.stages`` in ``root``; the leaderboard average of the last evaluated model, if evaluated."""
    check_stages(cfg)
    alone = [name for name in cfg.stages if not stages.get(cfg, name).distributed]
    if world_size() > 1 and alone:
        distributed = [name for name in stages.known(cfg) if stages.get(cfg, name).distributed]
        raise PlatypusError(
            f"stages={list(cfg.stages)} under a multi-process launcher: only {', '.join(distributed)} is distributed. "
            f"Run `accelerate launch ... run.py stages=[{','.join(distributed)}] ...` (or hydra.run.dir=<run> after the "
            f"stages before it), then the other stages with plain `python run.py` in the same run folder."
        )
    root.mkdir(parents=True, exist_ok=True)
    with exclusive(root) if process_rank() == 0 else nullcontext():
        return _run_stages(cfg, root)


def _run_stages(cfg: DictConfig, root: Path) -> float | None:
    name = "-".join(str(section.name) for section in (cfg.data, cfg.lora, cfg.merge))
    tracker = (tracking.start(cfg.logger, cfg, root, name, tracking.hydra_job(), job_type="+".join(cfg.stages))
               if process_rank() == 0 else tracking.Tracker())
    run = Run(cfg, root, tracker)
    try:
        found = found_in(run)
        for stage_name in cfg.stages:
            stage = stages.get(cfg, stage_name)
            inputs = stage.inputs(cfg, found, run)
            if inputs is None:  # nothing to do (merge=none, evaluate.plan=true)
                continue
            folder, manifest = run.stage(stage_name, stage.config(cfg), stage.identity(cfg, inputs),
                                         lambda out: stage.run(cfg, inputs, out, run))
            if process_rank() == 0:
                stage.log(run, folder, manifest)
            measured = stage.objective(manifest)
            run.objective = run.objective if measured is None else measured
            found.update(stage.outputs(folder))
        run.trim_cache()
        return run.objective
    finally:
        run.write_run_summary()
        run.tracker.finish()


def main(cfg: DictConfig) -> float | None:
    """Entry called by run.py: user-fixable problems become one paragraph and exit code 2."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    given = any(o.split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for o in hydra.overrides.hydra)
    return run_checked(cfg, Path(hydra.runtime.output_dir), run_dir_given=given)


def check_run_dir(given: bool) -> None:
    """Under accelerate launch/torchrun every rank composes its own config: the default run folder's timestamp
    can differ between ranks by a second, splitting one run over two folders."""
    if world_size() > 1 and not given:
        raise PlatypusError(
            f"{world_size()} processes were launched without hydra.run.dir: each would name its own timestamped run "
            f"folder. Give one: `accelerate launch ... run.py stages=[train] hydra.run.dir=runs/<name> ...`."
        )


def run_checked(cfg: DictConfig, root: Path, run_dir_given: bool = True) -> float | None:
    """Check every setting, then run the pipeline; a PlatypusError, or a failed write (whichever library raised
    it: platypus/runtime/failures.py), becomes one paragraph on stderr and exit code 2 (``traceback=true``: the
    traceback)."""
    from omegaconf import errors as omegaconf_errors

    show_traceback = bool(cfg.get("traceback"))
    try:
        if cfg.get("plan"):  # before the checks: a plan for a GPU run is asked for on a machine without one
            from platypus import plan

            plan.write(cfg, root)
            return None
        check_run_dir(run_dir_given)
        check_config(cfg)
        return run_pipeline(cfg, root)
    except PlatypusError as error:
        fail(str(error), show_traceback)
    except omegaconf_errors.MissingMandatoryValue as error:
        fail(f"Config key '{error.full_key}' has no value (???): set it, e.g. {error.full_key}=<value>.", show_traceback)
    except Exception as error:  # noqa: BLE001 - only a failed write is handled here; the rest is re-raised
        failure = write_failure(error)
        if failure is None:
            raise
        fail(message(failure, root), show_traceback)
    return None
