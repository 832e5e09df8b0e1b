"""Torch models (training only): two-tower retrieval and the multi-task ranker."""

from training.models.ranker import Ranker, RankerConfig
from training.models.two_tower import ItemTower, TwoTower, TwoTowerConfig, UserTower

__all__ = ["ItemTower", "Ranker", "RankerConfig", "TwoTower", "TwoTowerConfig", "UserTower"]
