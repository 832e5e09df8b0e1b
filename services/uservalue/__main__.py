"""python -m services.uservalue: config -> bundle -> user-value scorer -> serve."""

from __future__ import annotations

import functools
import logging
import sys

from services.common.bundle import Bundle
from services.common.logging import setup_logging
from services.common.reload import ModelHolder, ReloadSettings, make_watcher
from services.common.server import run_main, serve_settings
from services.uservalue.config import SERVICE_NAME, UserValueConfig
from services.uservalue.scorer import DEFAULT_CACHE_USERS, UserValueScorer
from services.uservalue.servicer import register

log = logging.getLogger("services.uservalue")


async def main() -> None:
    config = UserValueConfig.from_env()
    setup_logging("uservalue", config.server.log_level, config.server.log_format)
    bundle = config.bundle.load()
    scorer = UserValueScorer.from_bundle(bundle, cache_users=config.cache_users)
    log.info("bundle %s loaded; user-value model on %s", bundle.version, scorer.provider)
    holder = ModelHolder(scorer, bundle.version)
    watcher = make_watcher(
        config.bundle, ReloadSettings.from_env(), holder,
        functools.partial(build_warm, cache_users=config.cache_users),
        name="uservalue", expected_spec=bundle.feature_spec,
    )  # fmt: skip
    try:
        await serve_settings(
            register(holder, bundle.version, config.max_users),
            config.server,
            SERVICE_NAME,
            model=holder,
        )
    finally:
        if watcher is not None:
            await watcher.stop()


def build_warm(bundle: Bundle, *, cache_users: int = DEFAULT_CACHE_USERS) -> UserValueScorer:
    """A new bundle's scorer, its ONNX session already run once (hot reload builds it)."""
    scorer = UserValueScorer.from_bundle(bundle, cache_users=cache_users)
    scorer.score(["warm-up"])
    return scorer


if __name__ == "__main__":
    sys.exit(run_main("uservalue", main))
