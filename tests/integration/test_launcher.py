"""The launcher's failure paths (no bundle needed): a service that cannot start is reported
with its exit code and log, and nothing is left running."""

from __future__ import annotations

import pytest

from services.launcher import DEFAULT_PORTS, Launcher, LaunchError, free_port


def test_missing_bundle_fails_fast_with_the_services_message(tmp_path):
    launcher = Launcher(tmp_path / "no-artifacts", mode="embedded", log_dir=tmp_path / "logs")
    with pytest.raises(LaunchError) as caught:
        launcher.start(timeout=60)
    message = str(caught.value)
    assert "gateway exited with code 2" in message
    assert "no bundle published" in message  # the service's own one-line error
    assert launcher.pids() == {}


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        Launcher(tmp_path, mode="sideways")


def test_ports_default_to_free_ones_or_take_the_given_ones(tmp_path):
    chosen = free_port()
    launcher = Launcher(tmp_path, ports={"gateway": chosen})
    assert launcher.ports["gateway"] == chosen
    assert set(launcher.ports) == set(DEFAULT_PORTS)
    assert len(set(launcher.ports.values())) == 5
