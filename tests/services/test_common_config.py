"""Environment readers fail fast with the variable's name."""

from __future__ import annotations

import pytest

from services.contract.errors import BundleError, ConfigError
from services.platform.config import ServerSettings, env_bool, env_int, load_bundle_from_env
from services.ranking.config import RankingConfig


def test_defaults_apply_when_unset():
    settings = ServerSettings.from_env("RECSERVE_X_PORT", 50052, env={})
    assert (settings.host, settings.port, settings.reuse_port) == ("127.0.0.1", 50052, False)


@pytest.mark.parametrize("raw", ["abc", "70000", "-1"])
def test_bad_port_names_the_variable(raw):
    with pytest.raises(ConfigError, match="RECSERVE_X_PORT"):
        ServerSettings.from_env("RECSERVE_X_PORT", 1, env={"RECSERVE_X_PORT": raw})


def test_bool_and_int_parsing():
    assert env_bool("B", False, env={"B": "yes"}) is True
    assert env_int("N", 3, env={"N": " 7 "}) == 7
    with pytest.raises(ConfigError):
        env_bool("B", False, env={"B": "maybe"})


def test_ranking_device_must_be_known():
    with pytest.raises(ConfigError, match="RECSERVE_RANKING_DEVICE"):
        RankingConfig.from_env(env={"RECSERVE_RANKING_DEVICE": "tpu"})


def test_missing_bundle_is_a_bundle_error(tmp_path):
    with pytest.raises(BundleError):
        load_bundle_from_env(env={"RECSERVE_ARTIFACTS": str(tmp_path)})


def test_bundle_version_selects_the_directory(tiny_bundle):
    env = {
        "RECSERVE_ARTIFACTS": str(tiny_bundle.parent),
        "RECSERVE_BUNDLE_VERSION": tiny_bundle.name,
    }
    assert load_bundle_from_env(env=env).root == tiny_bundle
