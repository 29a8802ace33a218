"""ALFWorld-style household tasks: a seeded simulator of the text game, its expert and splits."""
from envs.alfworld.env import AlfWorldEnv

__all__ = ["AlfWorldEnv"]
