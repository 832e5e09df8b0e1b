"""recserve services: one package per deployable, server plumbing in services.platform,
what training shares with serving in services.contract (docs/architecture.md)."""

# gRPC's I/O stack (RECSERVE_GRPC_IO), set before any module here imports grpc: grpc reads its
# flags once, at import (services/platform/grpc_io.py).
from services.platform import grpc_io as _grpc_io

_grpc_io.apply()
