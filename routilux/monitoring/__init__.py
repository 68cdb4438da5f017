"""Registries of flows (and views of jobs) shared across a process."""
