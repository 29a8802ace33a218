"""WebShop on a bundled, seeded catalogue (or the real WebShop files): search, open, choose, buy."""
from envs.webshop.env import WebShopEnv

__all__ = ["WebShopEnv"]
