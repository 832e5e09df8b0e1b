"""recserve's load-test harness: open-loop (constant or Poisson arrivals, latency from the
*intended* send time, so a stalled server cannot hide its tail) and closed-loop load against the
gateway, HdrHistogram recording, a step schedule that finds the highest rate meeting a p99 SLO,
realistic traffic from a bundle, and JSON / Markdown / PNG reports.

    python -m loadtest run  --artifacts artifacts --rate 500 --duration 30
    python -m loadtest step --artifacts artifacts --slo-p99-ms 50 --rates 200,400,800
"""

# First: gRPC's I/O stack is chosen before grpc loads (services/platform/grpc_io.py).
import services  # noqa: F401
