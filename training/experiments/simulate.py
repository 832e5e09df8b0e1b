"""Replay MovieLens holdout behaviour against two arms of an experiment.

Users are split by the experiment's hash (as the gateway splits them); each arm recommends from
the training part of the per-user temporal split; a shown item counts as clicked when the user
interacted with it in their holdout, and as a purchase with value = its rating when rated 5.
The A/B report then has to find the difference the offline metrics say is there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.gateway.experiments import HOLDOUT, Arm, Experiment, Exposure
from training.evaluate.references import Interactions, ItemKNN, Popularity, recommend
from training.experiments.report import Feedback

MODELS = {"popularity": Popularity, "item-knn": ItemKNN}


@dataclass(frozen=True)
class Simulation:
    experiment: Experiment
    exposures: list[Exposure]
    feedback: list[Feedback]
    offline_hit_rate: dict[str, float]  # clicks / impressions if every user saw every arm


def simulate(
    train: pd.DataFrame,
    test: pd.DataFrame,
    arms: tuple[str, str] = ("popularity", "item-knn"),
    k: int = 10,
    salt: str = "simulation",
    holdout: float = 0.0,
) -> Simulation:
    experiment = Experiment(
        name="simulated", salt=salt, holdout=holdout,
        arms=tuple(Arm(a, 1.0, {}) for a in arms),
    )  # fmt: skip
    data = Interactions.from_events(train)
    users = np.asarray(sorted(set(test["user_id"])), dtype=object)
    lists = {a: recommend(MODELS[a]().fit(data), data, users, k) for a in arms}
    truth = test.groupby("user_id")
    held = {u: dict(zip(g["item_id"], g["rating"], strict=True)) for u, g in truth}
    t0 = float(test["timestamp"].min())
    exposures, feedback = [], []
    hits = dict.fromkeys(arms, 0)
    for user in users:
        for arm in arms:
            hits[arm] += sum(item in held[user] for item in lists[arm][user])
        group = experiment.assign(str(user))
        shown = lists[arms[0] if group == HOLDOUT else group][user]
        exposures.append(Exposure(experiment.name, group, str(user), tuple(shown), "", t0))
        for item in shown:
            if item in held[user]:
                rating = float(held[user][item])
                feedback.append(Feedback(str(user), item, "click", t0 + 1.0))
                if rating >= 5:
                    feedback.append(Feedback(str(user), item, "purchase", t0 + 2.0, rating))
    rate = {a: hits[a] / (len(users) * k) for a in arms}
    return Simulation(experiment, exposures, feedback, rate)
