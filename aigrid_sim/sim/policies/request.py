"""What a policy knows about a request when it arrives (:class:`Request`).

Its own module so that it is compiled with the per-request path (``setup.py``): the engine makes
one per arrival. Imported from :mod:`aigrid_sim.sim.policies` (or ``.base``) as before.
"""

from __future__ import annotations


class Request:
    """What a policy knows about a request when it arrives (output length is not known yet).

    ``attempt`` counts earlier tries; on a fail-over, ``avoid`` is the site that just failed it
    (``-1`` otherwise), which the built-in policies do not pick again even if the view still
    shows it up (the client knows what the health checks have not yet noticed).
    """

    __slots__ = ("id", "arrival_s", "origin", "app", "capability", "slo_ms", "slo_on_ttft",
                 "in_tokens", "attempt", "avoid")

    def __init__(self, id: int, arrival_s: float, origin: int, app: int, capability: int,
                 slo_ms: float, slo_on_ttft: bool, in_tokens: int, attempt: int = 0,
                 avoid: int = -1):
        self.id = id
        self.arrival_s = arrival_s
        self.origin = origin
        self.app = app
        self.capability = capability
        self.slo_ms = slo_ms
        self.slo_on_ttft = slo_on_ttft
        self.in_tokens = in_tokens
        self.attempt = attempt
        self.avoid = avoid

    def __repr__(self) -> str:
        return (f"Request(id={self.id}, origin={self.origin}, app={self.app}, "
                f"capability={self.capability}, slo_ms={self.slo_ms})")
