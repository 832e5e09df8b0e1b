"""Fixtures the service tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.contract.bundle import Bundle


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path) -> Bundle:
    """The tiny trained bundle, loaded once per test module."""
    return Bundle.load(tiny_bundle)
