"""Generated gRPC/protobuf stubs for the recserve.v1 contracts (see proto/recserve/v1)."""
