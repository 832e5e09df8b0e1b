"""Online experiments: deterministic, sticky traffic splits and the exposure log.

An experiment config (JSON, RECSERVE_EXPERIMENTS_FILE) names experiments; each has a salt, a
holdout share and two or more arms with weights and pipeline settings:

    {"experiments": [{
        "name": "ranker-v2", "salt": "2026-11-ranker", "holdout": 0.05,
        "arms": [
            {"name": "control", "weight": 1, "settings": {}},
            {"name": "retrieval-only", "weight": 1, "settings": {"rank": false}},
            {"name": "wide", "weight": 1, "settings": {"candidates": 400}}
        ]}]}

Settings: `rank` (false: serve the retrieval order, no ranking call) and `candidates` (how many
candidates retrieval returns for ranking). Comparing two bundle versions is done with two gateway
deployments behind a router that applies the same assignment (Experiment.assign).

A user's bucket is sha256("<salt>:<user_id>") read as a number in [0, 1): the same user always
lands in the same arm (sticky, no state to store), and experiments with different salts split
independently. The first `holdout` of the unit interval is the holdout group (served like the
control, but kept out of every arm so long-term effects can be measured against it).

Every Recommend answered under an experiment writes one exposure (time, request id, experiment,
arm, user, items in order) as a JSON line; training.experiments joins exposures with feedback
events and reports per-arm CTR, conversion and value per user (`make ab-report`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from services.contract.errors import ConfigError
from services.platform.config import env_path, env_str

HOLDOUT = "holdout"
ALLOWED_SETTINGS = {"rank": bool, "candidates": int}


@dataclass(frozen=True)
class Arm:
    name: str
    weight: float
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    arms: tuple[Arm, ...]
    holdout: float = 0.0

    def __post_init__(self) -> None:
        where = f"experiment {self.name!r}"
        if not self.name or not self.salt:
            raise ConfigError(f"{where}: name and salt must be non-empty")
        if len(self.arms) < 2:
            raise ConfigError(f"{where}: needs at least two arms")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names) or HOLDOUT in names:
            raise ConfigError(f"{where}: arm names must be distinct and not {HOLDOUT!r}")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"{where}: holdout must be in [0, 1)")
        for arm in self.arms:
            if not arm.weight > 0:
                raise ConfigError(f"{where}: arm {arm.name!r} weight must be > 0")
            for key, value in arm.settings.items():
                kind = ALLOWED_SETTINGS.get(key)
                if kind is None:
                    raise ConfigError(
                        f"{where}: arm {arm.name!r}: unknown setting {key!r} "
                        f"(known: {', '.join(sorted(ALLOWED_SETTINGS))})"
                    )
                if type(value) is not kind or (kind is int and value <= 0):
                    raise ConfigError(f"{where}: arm {arm.name!r}: {key} must be {kind.__name__}")

    def bucket(self, user_id: str) -> float:
        """The user's position in [0, 1) for this experiment's salt."""
        digest = hashlib.sha256(f"{self.salt}:{user_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    def expected_shares(self) -> dict[str, float]:
        """Each group's expected share of users (the sample-ratio-mismatch check's reference)."""
        total = sum(a.weight for a in self.arms)
        shares = {a.name: (1.0 - self.holdout) * a.weight / total for a in self.arms}
        if self.holdout > 0:
            shares[HOLDOUT] = self.holdout
        return shares

    def assign(self, user_id: str) -> str:
        """The arm name for this user, or HOLDOUT."""
        u = self.bucket(user_id)
        if u < self.holdout:
            return HOLDOUT
        u = (u - self.holdout) / (1.0 - self.holdout)
        total = sum(a.weight for a in self.arms)
        acc = 0.0
        for arm in self.arms:
            acc += arm.weight / total
            if u < acc:
                return arm.name
        return self.arms[-1].name

    def settings_for(self, arm_name: str) -> Mapping[str, Any]:
        """An arm's pipeline settings; the holdout is served like the first (control) arm."""
        if arm_name == HOLDOUT:
            return self.arms[0].settings
        return next(a.settings for a in self.arms if a.name == arm_name)


def parse_experiments(config: Mapping[str, Any]) -> list[Experiment]:
    try:
        experiments = [
            Experiment(
                name=str(e["name"]),
                salt=str(e["salt"]),
                holdout=float(e.get("holdout", 0.0)),
                arms=tuple(
                    Arm(str(a["name"]), float(a.get("weight", 1.0)), dict(a.get("settings", {})))
                    for a in e["arms"]
                ),
            )
            for e in config.get("experiments", [])
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"experiment config: {exc!r}") from None
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ConfigError("experiment config: experiment names must be distinct")
    owner: dict[str, str] = {}
    for e in experiments:  # every user is in every experiment: settings must not collide
        for key in {k for a in e.arms for k in a.settings}:
            if owner.setdefault(key, e.name) != e.name:
                raise ConfigError(
                    f"experiment config: {owner[key]!r} and {e.name!r} both set {key!r}; "
                    "use one experiment with more arms"
                )
    return experiments


def load_experiments(path: Path) -> list[Experiment]:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"RECSERVE_EXPERIMENTS_FILE={str(path)!r}: {exc}") from None
    return parse_experiments(config)


@dataclass(frozen=True)
class Exposure:
    experiment: str
    arm: str
    user_id: str
    items: tuple[str, ...]
    request_id: str = ""
    time: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "time": self.time,
                "request_id": self.request_id,
                "experiment": self.experiment,
                "arm": self.arm,
                "user_id": self.user_id,
                "items": list(self.items),
            },
            separators=(",", ":"),
        )


class ExposureLog:
    """Append-only JSON lines, one per exposure; thread-safe; flushed every `flush_every` lines
    and on close (exposures are analytics, not acknowledged data: a crash may lose the last
    unflushed lines, never corrupt earlier ones)."""

    def __init__(self, path: Path, flush_every: int = 64) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._pending = 0
        self._flush_every = flush_every
        self.written = 0

    def write(self, exposure: Exposure) -> None:
        line = exposure.to_json() + "\n"
        with self._lock:
            self._file.write(line)
            self.written += 1
            self._pending += 1
            if self._pending >= self._flush_every:
                self._file.flush()
                self._pending = 0

    def close(self) -> None:
        with self._lock:
            self._file.flush()
            self._file.close()


def exposures_for(
    experiments: Sequence[Experiment],
    user_id: str,
    items: Sequence[str],
    *,
    request_id: str = "",
    now: float | None = None,
) -> list[Exposure]:
    """One exposure per experiment the user takes part in (every user is in every experiment)."""
    stamp = time.time() if now is None else now
    return [
        Exposure(e.name, e.assign(user_id), user_id, tuple(items), request_id, stamp)
        for e in experiments
    ]


class ExperimentRunner:
    """What the gateway does per Recommend: the user's pipeline settings, then the exposures."""

    def __init__(self, experiments: Sequence[Experiment], log: ExposureLog | None) -> None:
        self.experiments = list(experiments)
        self.log = log

    def settings(self, user_id: str) -> dict[str, Any]:
        """Merged settings of the user's arm in every experiment (they never collide)."""
        merged: dict[str, Any] = {}
        for e in self.experiments:
            merged.update(e.settings_for(e.assign(user_id)))
        return merged

    def expose(self, user_id: str, items: Sequence[str], request_id: str = "") -> None:
        if self.log is not None and self.experiments:
            for exposure in exposures_for(self.experiments, user_id, items, request_id=request_id):
                self.log.write(exposure)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def runner_from_env(env: Mapping[str, str] | None = None) -> ExperimentRunner | None:
    """RECSERVE_EXPERIMENTS_FILE (unset: no experiments) and RECSERVE_EXPOSURE_LOG (default
    state/exposures.jsonl, relative to the start-up directory, made absolute)."""
    path = env_str("RECSERVE_EXPERIMENTS_FILE", "", env)
    if not path:
        return None
    experiments = load_experiments(Path(path))
    log_path = env_path("RECSERVE_EXPOSURE_LOG", "state/exposures.jsonl", env)
    return ExperimentRunner(experiments, ExposureLog(log_path))
