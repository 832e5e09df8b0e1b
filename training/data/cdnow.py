"""CDNOW master file (customer_id, YYYYMMDD, number of CDs, dollar value) -> canonical events.

Each purchase line becomes one event with item_id "cd" and value = dollar amount; the
user-value code then aggregates to customer-days (one customer-day = one transaction)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.contract import DatasetConfig
from training.data.digest import sha256_path
from training.data.schema import InteractionData, make_events

DATASET_TOML = """\
name = "cdnow"
description = "CDNOW customers' CD purchases 1997-01..1998-06 in US dollars (one item: 'cd')"

[money]
currency = "USD"

[behaviour]
repeat = true  # the one item is bought again and again
value_horizon_days = 273
"""
CONFIG = DatasetConfig.from_mapping(tomllib.loads(DATASET_TOML), "cdnow dataset.toml")


def load_cdnow(root: Path) -> InteractionData:
    path = Path(root) / "CDNOW_master.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing; run `make data`")
    # The Lifetimes copy has a header line; the original file has none.
    with open(path) as fh:
        has_header = not fh.readline().split()[0].isdigit()
    raw = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        names=["customer_id", "date", "n_cds", "dollars"],
        skiprows=1 if has_header else 0,
        dtype={"customer_id": str, "date": str, "n_cds": np.int64, "dollars": np.float64},
    )
    dates = pd.to_datetime(raw["date"], format="%Y%m%d", utc=True)
    ts = (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    events = make_events(
        raw["customer_id"].str.lstrip("0"),
        np.full(len(raw), "cd"),
        ts.to_numpy(),
        value=raw["dollars"].to_numpy(np.float32),
        event_type=np.full(len(raw), "purchase", dtype=object),
        quantity=raw["n_cds"].to_numpy(np.float32),
    )
    empty_items = pd.DataFrame({"item_id": [], "title": [], "tags": []})
    empty_users = pd.DataFrame({"user_id": []})
    return InteractionData(
        events, empty_items, empty_users, "cdnow/master", sha256_path(path), CONFIG
    )
