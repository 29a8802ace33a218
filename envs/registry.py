"""Name -> environment class registry: registering a task is one folder plus one config file."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Type

from envs.base import TextEnv

_REGISTRY: Dict[str, Type[TextEnv]] = {}


def register_env(name: str) -> Callable[[Type[TextEnv]], Type[TextEnv]]:
    """Class decorator: ``@register_env("deepsearch") class DeepSearchEnv(TextEnv): ...``."""

    def decorate(cls: Type[TextEnv]) -> Type[TextEnv]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"environment name {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def env_class(name: str) -> Type[TextEnv]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown environment {name!r}; registered: {sorted(_REGISTRY)}") from None


def list_envs() -> List[str]:
    return sorted(_REGISTRY)


def make_env(name: str, split: str = "train", seed: int = 0, **cfg: Any) -> TextEnv:
    """Build environment ``name`` on ``split`` with its RNG seeded by ``seed``; ``cfg`` goes to the
    constructor (the ``env:`` block of ``configs/task/<name>.yaml``)."""
    return env_class(name)(split=split, seed=seed, **cfg)
