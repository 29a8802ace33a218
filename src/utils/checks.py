"""Config values checked where they are used, so a wrong one fails at start-up naming its key, instead of
as a TypeError deep inside a rollout."""
from __future__ import annotations

import numbers
from typing import Any, Mapping, Optional, Sequence, Tuple


def require_number(key: str, value: Any, *, integer: bool = False, low: Optional[float] = None,
                   high: Optional[float] = None, low_open: bool = False) -> None:
    """Raise ``ValueError`` naming ``key`` unless ``value`` is a number (an integer if ``integer``; bools
    are refused) within [low, high] (``low_open``: strictly above ``low``)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{key}={value!r} must be {'an integer' if integer else 'a number'}, "
                         f"got {type(value).__name__}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        lower = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        upper = "" if high is None else f"<= {high:g}"
        raise ValueError(f"{key}={value!r} is out of range: it must be {' and '.join(p for p in (lower, upper) if p)}")


#: ``trainer.accelerator`` values that need a CUDA GPU
CUDA_ACCELERATORS = ("gpu", "cuda")


class NoGPUError(RuntimeError):
    """The config asks for a CUDA GPU that this machine does not have (raised before anything is built)."""


def require_cuda_if_asked(cfg: Any, choices: Optional[Mapping[str, Any]] = None,
                          overrides: Sequence[str] = ()) -> None:
    """Stop with :class:`NoGPUError` when ``cfg.trainer`` asks for CUDA GPUs (``trainer.accelerator=gpu``)
    that are not there, or for more of them than are visible; call it before instantiating anything, so
    no model is downloaded or loaded for a run that cannot start.

    ``choices`` (Hydra's ``runtime.choices``) and ``overrides`` (the command line's) only name, in the
    message, the config that asked (``experiment=paper_alfworld``, ``trainer=ddp``); by default they are
    read from the running Hydra app, when there is one."""
    trainer = cfg.get("trainer") or {}
    accelerator = str(trainer.get("accelerator", "")).lower()
    if accelerator not in CUDA_ACCELERATORS:
        return
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wanted = _requested_devices(trainer.get("devices", 1))
    if available and (wanted is None or wanted <= available):
        return
    if choices is None:
        choices, overrides = _hydra_choices_and_overrides()
    asked = [f"trainer.accelerator={trainer.get('accelerator')}"]
    for group in ("experiment", "trainer", "debug"):
        if choices.get(group) not in (None, "null", "None"):
            asked.append(f"{group}={choices[group]}")
    asked += [o for o in overrides if o.lstrip("+~").startswith(("trainer.accelerator", "trainer.devices"))]
    if available:
        problem = (f"{available} CUDA GPU{'s are' if available > 1 else ' is'} visible, but the config asks for "
                   f"{wanted} (trainer.devices={trainer.get('devices')})")
        fix = f"set trainer.devices={available} (and keep task.groups divisible by it)"
    else:
        problem = "No CUDA GPU is available on this machine (torch.cuda.is_available() is False)"
        fix = "run it on a machine with CUDA GPUs, or train on the CPU with trainer=cpu"
    raise NoGPUError(f"{problem}; asked for by {', '.join(dict.fromkeys(asked))}. Stopped before loading any "
                     f"model or building anything: {fix}.")


def _requested_devices(devices: Any) -> Optional[int]:
    """How many GPUs ``trainer.devices`` asks for: an int (-1: all), a list of indices, or a string of
    either ("2", "0,1", "auto": all); None = as many as there are."""
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return None
        if "," in text:
            return len([d for d in text.split(",") if d.strip()])
        devices = int(text)
    if isinstance(devices, numbers.Integral):
        return None if devices == -1 else int(devices)
    try:
        indices = list(devices)
    except TypeError:
        return 1
    return max(int(i) for i in indices) + 1 if indices else 0


def _hydra_choices_and_overrides() -> Tuple[Mapping[str, Any], Sequence[str]]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}, ()
    hydra_cfg = HydraConfig.get()
    return dict(hydra_cfg.runtime.choices), list(hydra_cfg.overrides.task)
