"""Text environments for LLM agents. Importing this package registers every bundled task."""
from envs.base import StepResult, TextEnv
from envs.registry import env_class, list_envs, make_env, register_env

from envs import deepsearch  # noqa: E402,F401  (registers "deepsearch")
from envs import alfworld  # noqa: E402,F401  (registers "alfworld")
from envs import webshop  # noqa: E402,F401  (registers "webshop")

__all__ = ["StepResult", "TextEnv", "env_class", "list_envs", "make_env", "register_env"]
