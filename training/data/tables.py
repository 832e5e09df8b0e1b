"""Reading one table of a dataset folder (CSV or Parquet) and parsing its columns with
per-row error reporting. Used by training.data.dataset; nothing here knows a data set.

Every parser returns (parsed values, problems), where a problem reads
"events.csv, line 7, column rating: 'abc' is not a number". Lines count from 1 with the
header as line 1 (what an editor shows); Parquet rows count from 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from training.data.contract import DataError

MAX_PROBLEMS_PER_CHECK = 5  # examples shown per kind of problem; the count says how many more
SECONDS_CEILING = 100_000_000_000  # year ~5138: a larger integer is milliseconds, not seconds


@dataclass(frozen=True)
class Table:
    """One file's contents as strings ('' = empty cell), with where it came from."""

    name: str  # file name as shown in messages
    frame: pd.DataFrame
    is_csv: bool

    def where(self, rows: np.ndarray | list[int]) -> list[str]:
        if self.is_csv:
            return [f"{self.name}, line {int(r) + 2}" for r in rows]
        return [f"{self.name}, row {int(r) + 1}" for r in rows]

    def problems(self, mask: np.ndarray, column: str, reason: str) -> list[str]:
        """One message per bad row (the first few), plus a count of the rest."""
        rows = np.flatnonzero(np.asarray(mask))
        if rows.size == 0:
            return []
        values = self.frame.get(column)
        out = []
        for where, row in zip(self.where(rows[:MAX_PROBLEMS_PER_CHECK]), rows, strict=False):
            value = None if values is None else str(values.iloc[row])
            shown = f" ({value!r})" if value else ""
            out.append(f"{where}, column {column}: {reason}{shown}")
        if rows.size > MAX_PROBLEMS_PER_CHECK:
            out.append(f"{self.name}, column {column}: {rows.size - MAX_PROBLEMS_PER_CHECK} more "
                       f"row(s) with the same problem")  # fmt: skip
        return out


def find_file(folder: Path, table: str, declared: str | None) -> Path | None:
    """The declared file, else <table>.csv / .parquet / .csv.gz (exactly one may exist)."""
    if declared is not None:
        path = folder / declared
        if not path.is_file():
            raise DataError([f"{path}: declared in dataset.toml [files] but missing"])
        return path
    found = [folder / f"{table}{ext}" for ext in (".csv", ".parquet", ".csv.gz")]
    found = [p for p in found if p.is_file()]
    if len(found) > 1:
        raise DataError([f"{folder}: both {found[0].name} and {found[1].name}; keep one"])
    return found[0] if found else None


def read_table(path: Path, encoding: str = "utf-8") -> Table:
    """Every column as strings; empty files, bad encodings and unreadable files are DataErrors."""
    if path.stat().st_size == 0:
        raise DataError([f"{path.name}: empty file (expected a header line and rows)"])
    is_csv = not path.name.endswith(".parquet")
    try:
        arrow = _read_csv(path, encoding) if is_csv else pq.read_table(path)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        message = str(exc)
        if is_csv and ("UTF8" in message or "UTF-8" in message or "decode" in message):
            raise DataError([_encoding_problem(path, encoding)]) from None
        raise DataError([f"{path.name}: cannot be read: {message.splitlines()[0]}"]) from None
    if arrow.num_rows == 0:
        raise DataError([f"{path.name}: no rows (only a header)"])
    frame = pd.DataFrame({name: _as_text(arrow.column(name)) for name in arrow.column_names})
    return Table(path.name, frame, is_csv)


def _read_csv(path: Path, encoding: str) -> pa.Table:
    # Read the header first so every column can be typed as a string (ids stay "007", not 7).
    with pacsv.open_csv(path, read_options=pacsv.ReadOptions(encoding=encoding)) as reader:
        names = reader.schema.names
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(encoding=encoding, block_size=1 << 24),
        convert_options=convert,
    )


def _as_text(column: pa.ChunkedArray) -> pd.Series:
    """Any Arrow column -> pandas text ('' for null; Arrow-backed, so 20M ids stay compact),
    stripped of surrounding spaces. Parquet timestamps become unix seconds; lists a|b|c."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        values = column.to_pylist()
        return pd.Series(["|".join(str(v) for v in row) if row else "" for row in values],
                         dtype="str")  # fmt: skip
    if pa.types.is_timestamp(column.type):
        unit = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[column.type.unit]
        raw = pc.divide(column.cast(pa.int64()), unit)
        column = pc.cast(raw, pa.int64()).cast(pa.string())
    text = pc.utf8_trim_whitespace(column.cast(pa.string()).combine_chunks())
    return pd.Series(pc.fill_null(text, ""), dtype="str")


def _encoding_problem(path: Path, encoding: str) -> str:
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as exc:
                return (f"{path.name}, line {number}: not valid {encoding} text (byte "
                        f"{line[exc.start:exc.start + 1]!r} at position {exc.start}); save the "
                        f"file as UTF-8 or declare encoding = \"...\" in dataset.toml")  # fmt: skip
    return f"{path.name}: not valid {encoding} text"


def numbers(table: Table, column: str) -> tuple[np.ndarray, list[str]]:
    """float64 values (NaN for empty cells); non-numeric text is a problem."""
    raw = table.frame[column]
    parsed = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    bad = np.isnan(parsed) & (raw != "").to_numpy()
    bad |= np.isinf(parsed)
    return np.where(bad, np.nan, parsed), table.problems(bad, column, "not a number")


def booleans(table: Table, column: str) -> tuple[np.ndarray, list[str]]:
    """true/false, 1/0, yes/no (any case); empty = true (available unless said otherwise)."""
    raw = table.frame[column].str.lower()
    truthy = raw.isin(["true", "1", "yes", "y", "t", ""]).to_numpy()
    falsy = raw.isin(["false", "0", "no", "n", "f"]).to_numpy()
    return truthy, table.problems(~(truthy | falsy), column, "not true/false")


def timestamps(table: Table, column: str) -> tuple[np.ndarray, list[str]]:
    """int64 unix seconds from unix seconds or ISO 8601 text (with or without a zone; no zone
    means UTC); a column may mix both."""
    raw = table.frame[column]
    as_number = pd.to_numeric(raw, errors="coerce")
    numeric = as_number.notna().to_numpy()
    seconds = np.floor(as_number.fillna(0).to_numpy(np.float64))
    problems = table.problems(numeric & (seconds < 0), column, "negative unix time")
    problems += table.problems(
        numeric & (seconds >= SECONDS_CEILING), column, "looks like milliseconds; give unix seconds"
    )
    if not numeric.all():
        text = raw[~numeric]
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        bad = np.zeros(len(raw), dtype=bool)
        bad[~numeric] = parsed.isna().to_numpy()
        reason = "not a timestamp (unix seconds or ISO 8601, e.g. 2024-05-01T12:30:00Z)"
        problems += table.problems(bad, column, reason)
        since = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        seconds[~numeric] = since.fillna(0).to_numpy(np.float64)
    return seconds.astype(np.int64), problems
