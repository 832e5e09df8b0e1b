"""bench.synthetic_shop writes a valid dataset in the data contract's format, seeded."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.synthetic_shop import write_shop
from training.data.dataset import load_dataset


@pytest.mark.timeout(60)
def test_the_shop_is_a_valid_seeded_dataset(tmp_path: Path) -> None:
    n = write_shop(tmp_path / "a", n_items=3000, n_users=400, n_events=6000, seed=1)
    data = load_dataset(tmp_path / "a")
    assert data.n_events == n and abs(n - 6000) < 600
    assert len(data.items) == 3000 and len(data.users) == 400
    assert data.has_money and data.config.currency == "EUR" and data.config.repeat
    assert set(data.events["event_type"]) == {"view", "cart", "purchase"}
    paid = data.events["event_type"] == "purchase"
    assert (data.events.loc[paid, "value"] > 0).all() and (
        data.events.loc[~paid, "value"] == 0
    ).all()
    assert not data.items["available"].all() and data.items["tags"].map(len).eq(1).all()
    write_shop(tmp_path / "b", n_items=3000, n_users=400, n_events=6000, seed=1)
    again = load_dataset(tmp_path / "b")
    assert again.sha256 == data.sha256  # same arguments, same files
