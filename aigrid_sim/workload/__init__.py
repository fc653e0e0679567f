"""Workload: apps, arrival processes and trace replay, all producing one :class:`RequestStream`."""

from aigrid_sim.workload.generate import generate_stream
from aigrid_sim.workload.stream import AppSpec, RequestStream

__all__ = ["AppSpec", "RequestStream", "generate_stream"]
