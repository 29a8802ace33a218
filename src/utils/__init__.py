"""Reusable template utilities: logging, instantiation, config printing, task wrapping."""

from src.utils.instantiators import instantiate_callbacks, instantiate_loggers
from src.utils.logging_utils import log_hyperparameters
from src.utils.pylogger import RankedLogger
from src.utils.rich_utils import enforce_tags, print_config_tree
from src.utils.utils import MetricNotFoundError, extras, get_metric_value, resolve_ckpt_path, task_wrapper

__all__ = [
    "MetricNotFoundError",
    "RankedLogger",
    "enforce_tags",
    "extras",
    "get_metric_value",
    "instantiate_callbacks",
    "instantiate_loggers",
    "log_hyperparameters",
    "print_config_tree",
    "resolve_ckpt_path",
    "task_wrapper",
]
