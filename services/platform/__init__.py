"""Server plumbing every service uses: env and config, logging, metrics, tracing,
interceptors, security, the server and one service life cycle, hot reload, protobuf
conversion, the added-items sync, gRPC's I/O stack (grpc_io, applied by services/__init__.py
before grpc loads) and the heap kept out of the cyclic GC (heap). May import
services.contract, never a service."""
