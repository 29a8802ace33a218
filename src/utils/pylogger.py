"""A rank-aware logger.

Under multi-process strategies (DDP, FSDP, ``ddp_spawn``) every process runs the same code, so a plain
``logging.getLogger`` prints each message once per rank. ``RankedLogger`` tags every message with the
process rank and can restrict output to rank 0.
"""

import logging
from typing import Any, Mapping, MutableMapping, Optional

from lightning.pytorch.utilities.rank_zero import rank_prefixed_message, rank_zero_only


class RankedLogger(logging.LoggerAdapter):
    """A ``LoggerAdapter`` that prefixes messages with the process rank.

    :param name: Name of the underlying ``logging.Logger`` (usually ``__name__``).
    :param rank_zero_only: If ``True``, messages are emitted on rank 0 only; otherwise on every rank, or on
        the rank given by the ``rank`` keyword of a log call (see :meth:`log`).
    :param extra: Extra contextual information passed to ``logging.LoggerAdapter``.
    """

    def __init__(
        self,
        name: str = __name__,
        rank_zero_only: bool = False,
        extra: Optional[Mapping[str, object]] = None,
    ) -> None:
        super().__init__(logger=logging.getLogger(name), extra=extra)
        self.rank_zero_only = rank_zero_only

    def log(self, level: int, msg: str, *args: Any, rank: Optional[int] = None, **kwargs: Any) -> None:
        """Log ``msg`` at ``level``, prefixed with the current rank.

        :param level: A ``logging`` level (``logging.INFO``...).
        :param msg: The message (``%``-style ``args`` are supported, as in ``logging``).
        :param rank: If given (and ``rank_zero_only`` is off), log only on this rank.
        """
        if not self.isEnabledFor(level):
            return
        current_rank = getattr(rank_zero_only, "rank", None)
        if current_rank is None:
            # Lightning sets the rank from the environment at import time; if something removed it, failing
            # loudly is better than silently logging from every process.
            raise RuntimeError("The `rank_zero_only.rank` attribute must be set before using RankedLogger.")
        msg, kwargs = self.process(msg, kwargs)
        msg = rank_prefixed_message(msg, current_rank)
        if self.rank_zero_only:
            if current_rank == 0:
                self.logger.log(level, msg, *args, **kwargs)
        elif rank is None or current_rank == rank:
            self.logger.log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        # The default adapter *replaces* any per-call ``extra``; merge instead so both survive.
        if self.extra:
            kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs
