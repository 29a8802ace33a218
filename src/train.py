"""Train an LLM agent with RL: ``python src/train.py algo=empg task=deepsearch``."""
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import hydra
import lightning as L
import rootutils
from lightning import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

# Put the project root on PYTHONPATH and set PROJECT_ROOT (used by configs/paths) from the
# `.project-root` marker, so `python src/train.py` works from any working directory without an install.
rootutils.setup_root(__file__, indicator=".project-root", pythonpath=True)

from src.utils import (  # noqa: E402
    RankedLogger,
    extras,
    get_metric_value,
    instantiate_callbacks,
    instantiate_loggers,
    log_hyperparameters,
    resolve_ckpt_path,
    task_wrapper,
)
from src.utils.checks import require_cuda_if_asked  # noqa: E402

log = RankedLogger(__name__, rank_zero_only=True)


@task_wrapper
def train(cfg: DictConfig) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Warm start (if configured), validate once, train with on-policy rollouts, optionally evaluate
    the best checkpoint. Returns (metrics, objects)."""
    require_cuda_if_asked(cfg)  # a GPU config on a machine without one stops here, before anything loads
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info(f"Instantiating datamodule <{cfg.task._target_}> (task {cfg.task.env_name})")
    datamodule: LightningDataModule = hydra.utils.instantiate(cfg.task)

    log.info(f"Instantiating model <{cfg.model._target_}> (policy <{cfg.model.policy._target_}>, algo {cfg.algo.name})")
    model: LightningModule = hydra.utils.instantiate(cfg.model)

    log.info("Instantiating callbacks...")
    callbacks: List[Callback] = instantiate_callbacks(cfg.get("callbacks"))

    log.info("Instantiating loggers...")
    logger: List[Logger] = instantiate_loggers(cfg.get("logger"))
    if not logger and any(isinstance(c, LearningRateMonitor) for c in callbacks):
        # Lightning refuses a learning-rate monitor without a logger; `logger=[]` should still train
        log.warning("logger=[]: dropping the LearningRateMonitor callback (it needs a logger)")
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]

    log.info(f"Instantiating trainer <{cfg.trainer._target_}>")
    trainer: Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    object_dict = {"cfg": cfg, "datamodule": datamodule, "model": model, "callbacks": callbacks,
                   "logger": logger, "trainer": trainer}
    if logger:
        log.info("Logging hyperparameters!")
        log_hyperparameters(object_dict)

    initial_metrics: Dict[str, Any] = {}
    if cfg.get("validate_before_training") and cfg.get("train") and not cfg.get("ckpt_path"):
        log.info("Validating the initial (warm-started) policy!")
        initial_metrics = {f"{k}_initial": v for k, v in trainer.validate(model=model, datamodule=datamodule)[0].items()}

    if cfg.get("train"):
        log.info("Starting training!")
        ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir,
                                      str(Path(cfg.paths.log_dir) / cfg.task_name / "runs"))
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
        if ckpt_path and not any(k.startswith("val/") for k in trainer.callback_metrics):
            # resumed from a run that had already trained its epochs (killed before anything read its
            # results): nothing was trained or validated here, so the final metrics are the restored policy's
            log.info("The checkpoint had no epoch left to train: validating its policy for the final metrics")
            trainer.validate(model=model, datamodule=datamodule)
    train_metrics = dict(trainer.callback_metrics)
    if initial_metrics and trainer.current_epoch == 0:
        # `trainer.max_epochs=0` (evaluate the warm start alone): the final policy is the initial one, so its
        # metrics are the final ones too (a sweeper's optimized_metric, val/success, exists either way)
        train_metrics = {k[: -len("_initial")]: v for k, v in initial_metrics.items()}

    test_metrics: Dict[str, Any] = {}
    if cfg.get("test"):
        log.info("Evaluating the best checkpoint on the validation tasks!")
        ckpt_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not ckpt_path:
            log.warning("Best checkpoint not found! Using current weights for evaluation...")
            ckpt_path = None
        results = trainer.validate(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
        test_metrics = {k.replace("val/", "test/"): v for k, v in results[0].items()}

    metric_dict = {**initial_metrics, **train_metrics, **test_metrics}
    summary = {k: round(float(v), 4) for k, v in metric_dict.items() if k.startswith("val/success")}
    log.info(f"Validation success: {summary}")
    return metric_dict, object_dict


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
def main(cfg: DictConfig) -> Optional[float]:
    extras(cfg)
    metric_dict, _ = train(cfg)
    # the value Hydra sweepers (e.g. Optuna) optimise
    return get_metric_value(metric_dict=metric_dict, metric_name=cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
