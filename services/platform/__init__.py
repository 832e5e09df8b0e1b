"""Server plumbing every service uses: env and config, logging, metrics, tracing,
interceptors, security, the server and one service life cycle, hot reload, protobuf
conversion, the added-items sync. May import services.contract, never a service."""
