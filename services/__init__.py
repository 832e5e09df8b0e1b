"""recserve services: one package per deployable, shared plumbing in services.common."""
