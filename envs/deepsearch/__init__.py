"""Deep-search QA over a seeded fictional world with a BM25 search tool (Search-R1 protocol)."""
from envs.deepsearch.env import DeepSearchEnv

__all__ = ["DeepSearchEnv"]
