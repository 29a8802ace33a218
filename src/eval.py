"""Evaluate a trained agent on held-out tasks:
``python src/eval.py task=deepsearch ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt``."""
import csv
from pathlib import Path
from typing import Any, Dict, List, Tuple

import hydra
import rootutils
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

rootutils.setup_root(__file__, indicator=".project-root", pythonpath=True)

from envs import env_class  # noqa: E402
from src.utils import RankedLogger, extras, instantiate_loggers, log_hyperparameters, task_wrapper  # noqa: E402
from src.utils.checks import require_cuda_if_asked  # noqa: E402

log = RankedLogger(__name__, rank_zero_only=True)


@task_wrapper
def evaluate(cfg: DictConfig) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Play the validation split greedily with the checkpoint's weights; returns (metrics, objects)."""
    require_cuda_if_asked(cfg)  # a GPU config on a machine without one stops here, before anything loads
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
        table = with_policy_column(table, cfg.get("label") or policy_label(cfg))
        log.info(f"Results on split '{cfg.task.get('val_split', 'val')}':\n{table}")
        for path in write_table(table, Path(cfg.paths.output_dir)):
            log.info(f"Table written to {path}")
    return metrics, object_dict


def policy_label(cfg: DictConfig) -> str:
    """What was evaluated, for the table's first column: the checkpoint, or the model as built."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    model = cfg.model
    if model.get("name_or_path"):
        return f"{model.name_or_path} (zero-shot)"
    return "tiny, warm start" if (model.get("warmstart") or {}).get("enabled") else "tiny, untrained"


def table_cells(markdown: str) -> List[List[str]]:
    """The cells of a Markdown table's header and body rows (the ``|---|`` rule dropped)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in markdown.strip().splitlines()]
    return [r for r in rows if not all(set(c) <= set("-: ") for c in r)]


def with_policy_column(markdown: str, label: str) -> str:
    """The table with a first column naming the policy, so rows of several evaluations line up (a
    prompting baseline next to a trained checkpoint, as the papers' tables put them)."""
    header, *body = table_cells(markdown)
    rows = [["Policy", *header], *[[label, *r] for r in body]]
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(rows[0]))) + "|"
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([lines[0], rule, *lines[1:]])


def write_table(markdown: str, out_dir: Path) -> Tuple[Path, Path]:
    """``results_table.md`` and ``results_table.csv`` in the run folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv_path = out_dir / "results_table.md", out_dir / "results_table.csv"
    md.write_text(markdown + "\n")
    with open(csv_path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(table_cells(markdown))
    return md, csv_path


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
