"""recserve services: one package per deployable, server plumbing in services.platform,
what training shares with serving in services.contract (docs/architecture.md)."""
