import pytest

from loadtest.runner import LoadSpec
from loadtest.targets import check_target


@pytest.mark.parametrize("target", ["127.0.0.1:50051", "localhost:1", "[::1]:50051", "127.9.9.9:5"])
def test_loopback_targets_are_allowed(target):
    assert check_target(target) == target


@pytest.mark.parametrize("target", ["10.0.0.5:50051", "example.com:443", "0.0.0.0:50051"])
def test_other_targets_need_an_explicit_allow_remote(target):
    with pytest.raises(ValueError, match="allow-remote"):
        check_target(target)
    assert check_target(target, allow_remote=True) == target


@pytest.mark.parametrize("target", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", ":50051"])
def test_malformed_targets_are_refused(target):
    with pytest.raises(ValueError, match="HOST:PORT"):
        check_target(target)


def test_a_load_spec_refuses_a_remote_target_and_unbounded_runs():
    with pytest.raises(ValueError, match="allow-remote"):
        LoadSpec(target="192.168.1.10:50051")
    with pytest.raises(ValueError, match="duration"):
        LoadSpec(target="127.0.0.1:1", duration_s=10_000)
    with pytest.raises(ValueError, match="max_requests"):
        LoadSpec(target="127.0.0.1:1", max_requests=0)


def test_an_address_list_is_checked_entry_by_entry_and_spread_round_robin():
    from loadtest.targets import addresses, channel_options

    replicas = "ipv4:127.0.0.1:5001,127.0.0.1:5002"
    assert check_target(replicas) == replicas
    assert addresses(replicas) == ["127.0.0.1:5001", "127.0.0.1:5002"]
    assert channel_options(replicas) == [("grpc.lb_policy_name", "round_robin")]
    assert channel_options("127.0.0.1:5001") == []
    with pytest.raises(ValueError, match="allow-remote"):
        check_target("ipv4:127.0.0.1:5001,10.0.0.5:5002")
    with pytest.raises(ValueError, match="HOST:PORT"):
        check_target("ipv4:127.0.0.1:5001,127.0.0.1")
