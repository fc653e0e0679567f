"""The simulation stage: the SimPy engine (request lifecycle), faults, and routing policies."""
