"""Task-level helpers used by the entry points (``src/train.py``, ``src/eval.py``)."""

import functools
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig

from src.utils import rich_utils
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)


def extras(cfg: DictConfig) -> None:
    """Apply the optional conveniences of ``cfg.extras`` before the task starts.

    - ``ignore_warnings``: silence Python warnings;
    - ``enforce_tags``: make sure ``cfg.tags`` is set (prompting when possible);
    - ``print_config``: print the config tree with rich and save it to the output dir.

    :param cfg: The composed config.
    """
    if not cfg.get("extras"):
        log.warning("Extras config not found! <cfg.extras=null>")
        return

    if cfg.extras.get("ignore_warnings"):
        log.info("Disabling python warnings! <cfg.extras.ignore_warnings=True>")
        warnings.filterwarnings("ignore")

    if cfg.extras.get("enforce_tags"):
        log.info("Enforcing tags! <cfg.extras.enforce_tags=True>")
        rich_utils.enforce_tags(cfg, save_to_file=True)

    if cfg.extras.get("print_config"):
        log.info("Printing config tree with Rich! <cfg.extras.print_config=True>")
        rich_utils.print_config_tree(cfg, resolve=True, save_to_file=True)


class MetricNotFoundError(KeyError):
    """Raised by :func:`get_metric_value` for an unknown metric name (a ``KeyError``, readable message)."""

    def __str__(self) -> str:
        # KeyError's default __str__ is the repr of its argument, which would print "\n" literally.
        return str(self.args[0]) if self.args else ""


def _output_dir(cfg: DictConfig) -> Optional[str]:
    try:
        return str(cfg.paths.output_dir)
    except Exception:  # noqa: BLE001 - e.g. `${hydra:...}` outside a Hydra app; never mask the task's error
        return None


def task_wrapper(task_func: Callable[[DictConfig], tuple[dict[str, Any], dict[str, Any]]]) -> Callable:
    """Decorate a task function (``train``/``evaluate``) with error logging and a final report.

    The wrapped function takes ``cfg`` and returns ``(metric_dict, object_dict)``. On failure the exception
    is logged (with traceback, to the run's log file) and re-raised; in every case the output dir is logged,
    so the run's folder is easy to find.

    :param task_func: The task function to wrap.
    :return: The wrapped function.
    """

    @functools.wraps(task_func)
    def wrap(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            metric_dict, object_dict = task_func(cfg=cfg)
        except Exception:
            # Log the traceback into the run's `.log` file, then re-raise: a crash must surface as a
            # non-zero exit code (CI, job schedulers, `make`) and must never leave a half-finished run
            # looking like a success. The one case that wants otherwise is a multirun with the Optuna
            # sweeper, where one failed trial kills the whole sweep (it cannot be resumed): there one might
            # return a sentinel metric (NaN or the worst value) instead, so the sweep records a bad trial
            # and goes on.
            log.exception("")
            raise
        finally:
            output_dir = _output_dir(cfg)
            if output_dir is not None:
                log.info(f"Output dir: {output_dir}")
        return metric_dict, object_dict

    return wrap


def get_metric_value(metric_dict: dict[str, Any], metric_name: Optional[str]) -> Optional[float]:
    """Return the value of ``metric_name`` from ``metric_dict`` as a float (for hyperparameter sweeps).

    :param metric_dict: Metric names to values (floats or 0-d tensors), e.g. ``trainer.callback_metrics``.
    :param metric_name: The metric to read (``cfg.optimized_metric``); ``None`` means "no metric wanted".
    :return: The metric value, or ``None`` when ``metric_name`` is ``None``.
    :raises MetricNotFoundError: (a ``KeyError``) if ``metric_name`` is not in ``metric_dict``; the message
        lists the available names.
    """
    if not metric_name:
        log.info("Metric name is None! Skipping metric value retrieval...")
        return None

    if metric_name not in metric_dict:
        available = ", ".join(sorted(map(str, metric_dict))) or "<none>"
        raise MetricNotFoundError(
            f"Metric value not found! <metric_name={metric_name}>\n"
            "Make sure the metric name logged in the LightningModule is correct and that "
            "`optimized_metric` in the hparams_search config is correct.\n"
            f"Available metrics: {available}"
        )

    value = metric_dict[metric_name]
    value = float(value.item()) if hasattr(value, "item") else float(value)
    log.info(f"Retrieved metric value! <{metric_name}={value}>")
    return value


def resolve_ckpt_path(ckpt_path: Optional[str], output_dir: str, runs_dir: str) -> Optional[str]:
    """The checkpoint ``ckpt_path=`` names: a file as given; a run folder -> its newest checkpoint;
    ``last`` -> the newest checkpoint of this run's folder (``hydra.run.dir`` set to an earlier run),
    else of the newest run under ``runs_dir`` that has one. Raises with what was searched if none."""
    if ckpt_path is None or str(ckpt_path) == "":
        return None
    ckpt_path = str(ckpt_path)
    if ckpt_path != "last":
        path = Path(ckpt_path)
        if path.is_dir():
            found = _newest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"ckpt_path={ckpt_path}: no *.ckpt under {path / 'checkpoints'}")
            return str(found)
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file or run folder")
        return ckpt_path
    found = _newest_checkpoint(Path(output_dir))
    if found is None:
        runs = [p for p in Path(runs_dir).glob("*") if p.is_dir() and _newest_checkpoint(p) is not None]
        if runs:
            found = max((_newest_checkpoint(p) for p in runs), key=lambda f: f.stat().st_mtime)
    if found is None:
        raise FileNotFoundError(f"ckpt_path=last: no checkpoint in this run's folder ({output_dir}/checkpoints) "
                                f"nor in any run under {runs_dir}")
    log.info(f"ckpt_path=last -> {found}")
    return str(found)


def _newest_checkpoint(run_dir: Path) -> Optional[Path]:
    """``last.ckpt`` (the true last state, written every epoch) if present, else the newest ``*.ckpt``."""
    folder = run_dir / "checkpoints"
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    found = sorted(folder.glob("*.ckpt"), key=lambda f: f.stat().st_mtime) if folder.is_dir() else []
    return found[-1] if found else None
