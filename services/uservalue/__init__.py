"""User-value service: P(active), expected transactions and value, and a segment per user."""
