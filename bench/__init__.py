"""Conveyor's benchmarks against the servers users would pick instead: ``python -m bench``."""
