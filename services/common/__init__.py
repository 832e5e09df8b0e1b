"""Plumbing and definitions shared by every service (and imported by training)."""
