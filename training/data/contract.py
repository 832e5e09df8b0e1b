"""The data contract's configuration: an optional `dataset.toml` beside the data files.

    config = DatasetConfig.load(Path("shop/"))     # defaults when there is no dataset.toml

Every key is optional and documented in docs/data.md. Unknown keys are refused with a
did-you-mean suggestion, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "dataset.toml"
TABLES: tuple[str, ...] = ("events", "items", "users")
# Contract columns per table (the names a file uses unless [columns.<table>] renames them).
EVENT_FIELDS: tuple[str, ...] = (
    "user_id", "item_id", "timestamp", "event_type", "rating", "value", "quantity", "order_id",
)  # fmt: skip
ITEM_FIELDS: tuple[str, ...] = ("item_id", "title", "description", "tags", "price", "available")
USER_FIELDS: tuple[str, ...] = ("user_id",)
REQUIRED: dict[str, tuple[str, ...]] = {
    "events": ("user_id", "item_id", "timestamp"),
    "items": ("item_id",),
    "users": ("user_id",),
}
CONTRACT_FIELDS: dict[str, tuple[str, ...]] = {
    "events": EVENT_FIELDS,
    "items": ITEM_FIELDS,
    "users": USER_FIELDS,
}
MAX_NUMERIC_BUCKETS = 8


class DataError(ValueError):
    """A dataset (or its dataset.toml) that cannot be used. `problems` lists every finding as
    "file, row N, column C: reason" (row/column only where they apply)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = "" if len(problems) <= 1 else f" (and {len(problems) - 1} more problem(s))"
        super().__init__(problems[0] + more if problems else "invalid dataset")

    def __str__(self) -> str:
        return "\n".join(self.problems)


@dataclass(frozen=True)
class AttributeSpec:
    """Declared attributes of one side table (items or users).

    categorical: columns whose values are categories; numeric: columns bucketed by
    `boundaries[name]` (declared edges) or by training-data quantiles when not declared.
    """

    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    boundaries: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return self.categorical + self.numeric


@dataclass(frozen=True)
class RatingScale:
    low: float = 1.0
    high: float = 5.0
    positive: float | None = None  # a rating >= positive is a "like"; default: 3/4 up the scale

    @property
    def like_threshold(self) -> float:
        if self.positive is not None:
            return self.positive
        return self.low + 0.75 * (self.high - self.low)

    def to_json(self) -> dict[str, float]:
        return {"min": self.low, "max": self.high, "positive": self.like_threshold}


@dataclass(frozen=True)
class DatasetConfig:
    """Everything dataset.toml can say; the defaults need no file at all."""

    name: str = ""
    description: str = ""
    files: Mapping[str, str] = field(default_factory=dict)  # table -> file name
    columns: Mapping[str, Mapping[str, str]] = field(
        default_factory=dict
    )  # table -> {ours: theirs}
    encoding: str = "utf-8"
    ratings: RatingScale = field(default_factory=RatingScale)
    event_weights: Mapping[str, float] = field(default_factory=dict)
    currency: str | None = None
    repeat: bool = False  # may items the user already interacted with be recommended again?
    value_horizon_days: int = 90
    tag_columns: tuple[str, ...] = ("tags",)
    tag_separator: str = "|"
    items: AttributeSpec = field(default_factory=AttributeSpec)
    users: AttributeSpec = field(default_factory=AttributeSpec)

    @classmethod
    def load(cls, folder: Path) -> DatasetConfig:
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            return cls(name=Path(folder).resolve().name)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DataError([f"{path}: not valid TOML: {exc}"]) from None
        return cls.from_mapping(raw, str(path), default_name=Path(folder).resolve().name)

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], where: str = CONFIG_FILE, default_name: str = ""
    ) -> DatasetConfig:
        problems: list[str] = []
        reader = _Reader(raw, where, problems)
        config = cls(
            name=reader.text("name", default_name),
            description=reader.text("description", ""),
            files=reader.table_of_text("files", TABLES),
            columns={t: reader.table_of_text(f"columns.{t}", CONTRACT_FIELDS[t]) for t in TABLES},
            encoding=reader.text("encoding", "utf-8"),
            ratings=RatingScale(
                reader.number("ratings.min", 1.0),
                reader.number("ratings.max", 5.0),
                reader.number("ratings.positive", None),
            ),
            event_weights=reader.table_of_numbers("event_weights"),
            currency=reader.text("money.currency", None),
            repeat=reader.boolean("behaviour.repeat", False),
            value_horizon_days=int(reader.number("behaviour.value_horizon_days", 90) or 90),
            tag_columns=reader.names("items.tag_columns", ("tags",)),
            tag_separator=reader.text("items.tag_separator", "|") or "|",
            items=reader.attributes("items"),
            users=reader.attributes("users"),
        )
        reader.refuse_unknown()
        problems += config._consistency(where)
        if problems:
            raise DataError(problems)
        return config

    def _consistency(self, where: str) -> list[str]:
        out = []
        r = self.ratings
        if not r.low < r.high:
            out.append(f"{where}: ratings.min ({r.low}) must be below ratings.max ({r.high})")
        elif r.positive is not None and not r.low <= r.positive <= r.high:
            out.append(f"{where}: ratings.positive ({r.positive}) must lie in [{r.low}, {r.high}]")
        for name, weight in self.event_weights.items():
            if not weight > 0 or not math.isfinite(weight):
                out.append(f"{where}: event_weights.{name} must be a positive number")
        if self.value_horizon_days < 1:
            out.append(f"{where}: behaviour.value_horizon_days must be >= 1")
        for side, spec in (("items", self.items), ("users", self.users)):
            clash = set(spec.categorical) & set(spec.numeric)
            if clash:
                out.append(
                    f"{where}: {side} attribute(s) {sorted(clash)} both categorical and numeric"
                )
            for name, edges in spec.boundaries.items():
                if name not in spec.numeric:
                    out.append(f"{where}: {side}.boundaries.{name}: not a numeric attribute")
                if list(edges) != sorted(set(edges)):
                    out.append(f"{where}: {side}.boundaries.{name} must be strictly increasing")
        reserved = set(CONTRACT_FIELDS["items"]) | set(self.tag_columns)
        for name in self.items.names:
            if name in reserved:
                out.append(
                    f"{where}: items attribute {name!r} is a contract column, not an attribute"
                )
        return out

    def column(self, table: str, name: str) -> str:
        """The file's column name for contract column `name` of `table`."""
        return self.columns.get(table, {}).get(name, name)

    def to_json(self) -> dict[str, Any]:
        """What the bundle's manifest records (dataset section)."""
        return {
            "name": self.name,
            "rating_scale": self.ratings.to_json(),
            "event_weights": dict(self.event_weights),
            "currency": self.currency,
            "repeat": self.repeat,
            "value_horizon_days": self.value_horizon_days,
            "tag_columns": list(self.tag_columns),
            "item_attributes": {"categorical": list(self.items.categorical),
                                "numeric": list(self.items.numeric)},
            "user_attributes": {"categorical": list(self.users.categorical),
                                "numeric": list(self.users.numeric)},
        }  # fmt: skip


_KNOWN_KEYS = {
    "name", "description", "encoding", "files", "columns", "ratings", "event_weights", "money",
    "behaviour", "items", "users",
}  # fmt: skip
_KNOWN_SUBKEYS = {
    "ratings": {"min", "max", "positive"},
    "money": {"currency"},
    "behaviour": {"repeat", "value_horizon_days"},
    "items": {"tag_columns", "tag_separator", "categorical", "numeric", "boundaries"},
    "users": {"categorical", "numeric", "boundaries"},
    "columns": set(TABLES),
}


class _Reader:
    """Typed reads from the parsed TOML that record problems instead of raising at once."""

    def __init__(self, raw: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.raw, self.where, self.problems = raw, where, problems

    def _get(self, dotted: str) -> Any:
        node: Any = self.raw
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def _bad(self, dotted: str, wanted: str, got: Any) -> None:
        self.problems.append(f"{self.where}: {dotted} must be {wanted}, got {got!r}")

    def text(self, dotted: str, default: str | None) -> Any:
        value = self._get(dotted)
        if value is None:
            return default
        if not isinstance(value, str):
            self._bad(dotted, "a string", value)
            return default
        return value

    def number(self, dotted: str, default: float | None) -> Any:
        value = self._get(dotted)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._bad(dotted, "a number", value)
            return default
        return float(value)

    def boolean(self, dotted: str, default: bool) -> bool:
        value = self._get(dotted)
        if value is None:
            return default
        if not isinstance(value, bool):
            self._bad(dotted, "true or false", value)
            return default
        return value

    def names(self, dotted: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._get(dotted)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self._bad(dotted, "a list of column names", value)
            return default
        return tuple(value)

    def table_of_text(self, dotted: str, allowed: tuple[str, ...]) -> dict[str, str]:
        value = self._get(dotted) or {}
        out: dict[str, str] = {}
        for key, v in value.items() if isinstance(value, Mapping) else ():
            if key not in allowed:
                self._unknown(f"{dotted}.{key}", key, allowed)
            elif not isinstance(v, str) or not v:
                self._bad(f"{dotted}.{key}", "a non-empty string", v)
            else:
                out[key] = v
        return out

    def table_of_numbers(self, dotted: str) -> dict[str, float]:
        value = self._get(dotted) or {}
        out: dict[str, float] = {}
        for key, v in value.items() if isinstance(value, Mapping) else ():
            if isinstance(v, bool) or not isinstance(v, int | float):
                self._bad(f"{dotted}.{key}", "a number", v)
            else:
                out[str(key)] = float(v)
        return out

    def attributes(self, side: str) -> AttributeSpec:
        edges_raw = self._get(f"{side}.boundaries") or {}
        boundaries: dict[str, tuple[float, ...]] = {}
        for name, edges in edges_raw.items() if isinstance(edges_raw, Mapping) else ():
            ok = (
                isinstance(edges, list)
                and edges
                and all(isinstance(e, int | float) and not isinstance(e, bool) for e in edges)
            )
            if not ok:
                self._bad(f"{side}.boundaries.{name}", "a non-empty list of numbers", edges)
            else:
                boundaries[str(name)] = tuple(float(e) for e in edges)
        return AttributeSpec(
            self.names(f"{side}.categorical"), self.names(f"{side}.numeric"), boundaries
        )

    def _unknown(self, dotted: str, key: str, allowed: Any) -> None:
        close = difflib.get_close_matches(key, sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.problems.append(f"{self.where}: unknown key {dotted!r}{hint}")

    def refuse_unknown(self) -> None:
        for key, value in self.raw.items():
            if key not in _KNOWN_KEYS:
                self._unknown(key, key, _KNOWN_KEYS)
            elif key in _KNOWN_SUBKEYS and isinstance(value, Mapping):
                for sub in value:
                    if sub not in _KNOWN_SUBKEYS[key]:
                        self._unknown(f"{key}.{sub}", sub, _KNOWN_SUBKEYS[key])
            elif key in (*_KNOWN_SUBKEYS, "files", "event_weights") and not isinstance(
                value, Mapping
            ):
                self._bad(key, "a table", value)
