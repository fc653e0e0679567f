"""The world stage: geography, sites, origins and demand, the latency graph and candidate lists.

``build`` assembles a :class:`World` from a validated config; ``geo`` and ``rtt_fit`` own the
round-trip-time model and its fit on measured data.
"""

from aigrid_sim.world.build import CONTINENTS, Tier, World, build_world, read_data, shortest_rtt

__all__ = ["CONTINENTS", "Tier", "World", "build_world", "read_data", "shortest_rtt"]
