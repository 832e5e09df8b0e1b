"""`make bench`: the plumbing limit, recserve split and embedded, in-process stage costs, ratios."""

# First: gRPC's I/O stack is chosen before grpc loads (services/platform/grpc_io.py).
import services  # noqa: F401
