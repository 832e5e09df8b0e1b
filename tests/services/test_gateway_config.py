"""Gateway settings come from the environment and fail fast, naming the bad variable."""

from __future__ import annotations

import pytest

from services.contract.errors import ConfigError
from services.gateway.config import GatewaySettings


def test_defaults_are_split_mode_on_the_usual_ports():
    settings = GatewaySettings.from_env({})
    assert settings.mode == "split" and settings.server.port == 50051
    assert [b.address for b in settings.backends] == [
        "127.0.0.1:50052",
        "127.0.0.1:50053",
        "127.0.0.1:50054",
        "127.0.0.1:50055",
    ]
    assert settings.limits.candidates == 200 and settings.limits.max_k == 100


def test_environment_overrides():
    settings = GatewaySettings.from_env(
        {
            "RECSERVE_MODE": "embedded",
            "RECSERVE_GATEWAY_PORT": "6000",
            "RECSERVE_RETRIEVAL_ADDR": "retrieval:7000",
            "RECSERVE_RANKING_DEADLINE_MS": "25",
            "RECSERVE_CANDIDATES": "500",
            "RECSERVE_RANKING_DEVICE": "cpu",
        }
    )
    assert settings.mode == "embedded" and settings.server.port == 6000
    assert settings.retrieval.address == "retrieval:7000"
    assert settings.ranking.deadline_s == pytest.approx(0.025)
    assert settings.limits.candidates == 500 and not settings.prefer_gpu


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECSERVE_MODE", "both"),
        ("RECSERVE_GATEWAY_PORT", "http"),
        ("RECSERVE_GATEWAY_PORT", "70000"),
        ("RECSERVE_FEATURE_ADDR", "no-port"),
        ("RECSERVE_RANKING_ADDR", "host:0"),
        ("RECSERVE_RETRIEVAL_DEADLINE_MS", "0"),
        ("RECSERVE_MAX_K", "0"),
        ("RECSERVE_CANDIDATES", "-1"),
        ("RECSERVE_RANKING_DEVICE", "tpu"),
    ],
)
def test_invalid_values_fail_at_start_up_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        GatewaySettings.from_env({name: value})
