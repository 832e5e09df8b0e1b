"""Feature service: online user state (profile, history, seen items, activity) and item facts."""
