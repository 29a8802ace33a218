"""Evaluate a trained agent on held-out tasks:
``python src/eval.py task=deepsearch ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt``."""
from typing import Any, Dict, List, Tuple

import hydra
import rootutils
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

rootutils.setup_root(__file__, indicator=".project-root", pythonpath=True)

from envs import env_class  # noqa: E402
from src.utils import RankedLogger, extras, instantiate_loggers, log_hyperparameters, task_wrapper  # noqa: E402

log = RankedLogger(__name__, rank_zero_only=True)


@task_wrapper
def evaluate(cfg: DictConfig) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Play the validation split greedily with the checkpoint's weights; returns (metrics, objects)."""
    datamodule: LightningDataModule = hydra.utils.instantiate(cfg.task)
    model: LightningModule = hydra.utils.instantiate(cfg.model)
    logger: List[Logger] = instantiate_loggers(cfg.get("logger"))
    trainer: Trainer = hydra.utils.instantiate(cfg.trainer, logger=logger)
    object_dict = {"cfg": cfg, "datamodule": datamodule, "model": model, "logger": logger, "trainer": trainer}
    if logger:
        log_hyperparameters(object_dict)
    ckpt_path = cfg.get("ckpt_path") or None
    if ckpt_path is None:
        log.warning("No ckpt_path given: evaluating the initial (warm-started) policy.")
    results = trainer.validate(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = dict(results[0])
    table = env_class(cfg.task.env_name).report({k.removeprefix("val/"): v for k, v in metrics.items()})
    if table:
        log.info(f"Results on split '{cfg.task.get('val_split', 'val')}':\n{table}")
    return metrics, object_dict


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
