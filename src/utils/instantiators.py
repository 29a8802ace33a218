"""Build lists of callbacks / loggers from their Hydra config groups.

Each group is a mapping ``{name: {_target_: ..., **kwargs}}`` (several option files merged), so a run can
enable any subset from the command line (``callbacks=none``, ``logger=[]``,
``callbacks=[default,early_stopping]``).
Entries without ``_target_`` (e.g. a ``defaults`` leftover or a disabled ``null``) are skipped.
"""

from typing import Any, Optional

import hydra
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)


def _instantiate_group(cfg: Optional[DictConfig], kind: str) -> list[Any]:
    objects: list[Any] = []
    if not cfg:
        log.warning(f"No {kind} configs found! Skipping...")
        return objects
    if not isinstance(cfg, DictConfig):
        raise TypeError(
            f"The {kind} config must be a DictConfig mapping names to `_target_` configs, "
            f"got {type(cfg).__name__}: {cfg!r}"
        )
    for name, conf in cfg.items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            log.info(f"Instantiating {kind[:-1]} <{conf._target_}> ({name})")
            objects.append(hydra.utils.instantiate(conf))
    return objects


def instantiate_callbacks(callbacks_cfg: Optional[DictConfig]) -> list[Callback]:
    """Instantiate every callback in ``callbacks_cfg`` that has a ``_target_``.

    :param callbacks_cfg: The ``callbacks`` config group (may be ``None`` or empty).
    :return: The callbacks, in config order; ``[]`` when there are none.
    :raises TypeError: If ``callbacks_cfg`` is neither empty nor a ``DictConfig``.
    """
    return _instantiate_group(callbacks_cfg, "callbacks")


def instantiate_loggers(logger_cfg: Optional[DictConfig]) -> list[Logger]:
    """Instantiate every logger in ``logger_cfg`` that has a ``_target_``.

    :param logger_cfg: The ``logger`` config group (may be ``None`` or empty).
    :return: The loggers, in config order; ``[]`` when there are none.
    :raises TypeError: If ``logger_cfg`` is neither empty nor a ``DictConfig``.
    """
    return _instantiate_group(logger_cfg, "loggers")
