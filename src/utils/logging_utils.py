"""Send a curated set of hyperparameters to the experiment loggers."""

from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)

# Top-level config keys worth comparing between runs. `paths` and `hydra` are left out on purpose: they
# differ for every run and would only clutter the hparams tables.
HPARAM_KEYS = (
    "model", "algo", "task", "trainer", "callbacks", "extras", "task_name", "tags", "ckpt_path", "seed",
)


def _to_container(cfg: Any) -> dict:
    """Resolve interpolations when possible (``${algo.lr}`` is more useful as a number than a string).

    Outside a running Hydra app ``${hydra:...}`` cannot resolve; fall back to the raw values then.
    """
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception as ex:  # noqa: BLE001 - any resolver error: logging hparams must never kill a run
        log.warning(f"Could not resolve the config for hparam logging ({ex}); logging unresolved values.")
        return OmegaConf.to_container(cfg, resolve=False)


@rank_zero_only
def log_hyperparameters(object_dict: dict[str, Any]) -> None:
    """Log the chosen parts of the config plus the policy's parameter counts to every logger.

    The LightningModule saves its own hparams with ``save_hyperparameters(logger=False)`` (for checkpoints);
    this function decides what the *loggers* see, so runs compare on the same keys whatever the module saves.

    :param object_dict: Must contain ``"cfg"`` (the composed ``DictConfig``), ``"model"`` (the
        LightningModule holding the policy) and ``"trainer"`` (a ``lightning.pytorch.Trainer``).
    """
    cfg = _to_container(object_dict["cfg"])
    model = object_dict["model"]
    trainer = object_dict["trainer"]

    if not trainer.logger:
        log.warning("Logger not found! Skipping hyperparameter logging...")
        return

    hparams: dict[str, Any] = {key: cfg.get(key) for key in HPARAM_KEYS if key in cfg}

    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    hparams["model/params/total"] = total
    hparams["model/params/trainable"] = trainable
    hparams["model/params/non_trainable"] = total - trainable

    # `trainer.loggers` holds every logger; log_hyperparams on each so all of them get the same dict.
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
