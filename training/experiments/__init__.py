"""Online experiment analysis: exposures joined with feedback, per-arm metrics (ab-report)."""
