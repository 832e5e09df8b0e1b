"""Gateway: the public API. Validates, runs the stage pipeline (embedded or split), answers."""
