"""bench.topology.start_embedded: N gateway processes, each on its own port, and the load
harness spreads its calls over all of them (round robin over the address list)."""

from __future__ import annotations

import asyncio

from bench.topology import start_embedded
from loadtest.runner import LoadSpec, TrafficConfig, run_async


def test_two_embedded_gateways_each_answer_part_of_the_load(tiny_bundle, tmp_path):
    env = {"RECSERVE_ACCESS_LOG_SAMPLE": "1"}  # every call in the access log
    with start_embedded(
        tiny_bundle.parent, tiny_bundle.name, tmp_path, gateways=2, extra_env=env
    ) as group:
        assert group.target.startswith("ipv4:127.0.0.1:") and group.target.count(",") == 1
        spec = LoadSpec(
            target=group.target, mode="closed", concurrency=2, duration_s=1.0, warmup_s=0.0,
            max_requests=200, seed=3,
        )  # fmt: skip
        traffic = TrafficConfig(bundle_dir=str(tiny_bundle), mix="recommend=1").build(3)
        result = asyncio.run(run_async(spec, traffic))
        served = {
            name: group.log(name).count('method="/recserve.v1.Gateway/Recommend"')
            for name in ("gateway0", "gateway1")
        }
    assert result.summary()["errors"] == 0
    total = sum(served.values())
    assert total >= result.sent * 0.9  # (the last answers' lines may still be in flight)
    for name, n in served.items():  # round robin: each process about half
        assert n >= total * 0.35, (name, served)
