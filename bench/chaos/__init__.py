"""Seeded chaos runs against a real Squall platform: `python -m bench.chaos --help`."""
