"""Shared test helpers: tiny random-weight models of every architecture family, tiny checkpoints, and
real requests from the shared data. Tests import them from here, never from other tests."""
