"""The gateway's served model (services.platform.service): the pipeline of one bundle version,
embedded or split (the wiring: services.gateway.app)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from services.contract.bundle import Bundle
from services.gateway.app import build_pipeline, start_item_sync, start_reloading
from services.gateway.config import GatewaySettings
from services.gateway.experiments import ExperimentRunner, runner_from_env
from services.gateway.pipeline import Pipeline
from services.platform.item_sync import ItemSync
from services.platform.reload import BundleWatcher, ModelHolder, ReloadSettings
from services.platform.service import ServedModel


class GatewayModel(ServedModel[Pipeline]):
    """The pipeline; its hot reload (a whole new pipeline embedded, the new catalog over the same
    backends split) is app.start_reloading's, which also warms what it builds. The first one is
    not warmed here: in split mode its backends may not be up yet."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.experiments: ExperimentRunner | None = None
        self.sync: ItemSync | None = None

    def from_bundle(self, bundle: Bundle) -> Pipeline:
        return build_pipeline(self.settings, bundle)

    async def close(self, model: Pipeline) -> None:
        await model.close()  # its feedback spool, then the stages (shared in split)

    def describe(self, model: Pipeline, bundle: Bundle) -> str:
        settings = self.settings
        embedded = settings.mode == "embedded"
        backends = "in-process" if embedded else [b.address for b in settings.backends]
        return f"mode={settings.mode} backends={backends}"

    @contextlib.asynccontextmanager
    async def running(self, holder: ModelHolder[Pipeline]) -> AsyncIterator[None]:
        """A/B arms + exposure log (RECSERVE_EXPERIMENTS_FILE), and the sync of items added
        through other replicas."""
        self.experiments = runner_from_env()
        self.sync = start_item_sync(self.settings, holder)
        try:
            yield
        finally:
            if self.sync is not None:
                await self.sync.stop()
            if self.experiments is not None:
                self.experiments.close()

    def watch(
        self, holder: ModelHolder[Pipeline], reload: ReloadSettings
    ) -> BundleWatcher[Pipeline] | None:
        return start_reloading(self.settings, holder, reload, self.sync)
