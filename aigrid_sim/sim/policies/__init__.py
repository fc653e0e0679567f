"""Routing policies: the protocol, the registry and the built-ins.

Add your own without editing the package::

    # mypolicies.py
    from aigrid_sim.sim.policies import BasePolicy, register

    @register("edge_only")
    class EdgeOnly(BasePolicy):
        def choose(self, request, view):
            return view.tier_candidates(request.origin, request.capability, 0)[0]

then run ``aigrid-sim plugins=[mypolicies] policy=edge_only`` (or ``--plugins mypolicies``, or
``policy=mypolicies:EdgeOnly``). A scenario file alone cannot import a module: see
:func:`~aigrid_sim.sim.policies.base.allow_plugins`.
"""

from aigrid_sim.sim.policies import builtin as _builtin  # noqa: F401  (registers the built-ins)
from aigrid_sim.sim.policies.base import (
                                      BasePolicy,
                                      FencedPolicy,
                                      PolicyError,
                                      Reject,
                                      Request,
                                      RoutingPolicy,
                                      allow_plugins,
                                      allowed_plugins,
                                      available_policies,
                                      load_plugins,
                                      make_policy,
                                      register,
)
from aigrid_sim.sim.policies.view import GridView

__all__ = ["BasePolicy", "FencedPolicy", "GridView", "PolicyError", "Reject", "Request",
           "RoutingPolicy", "allow_plugins", "allowed_plugins", "available_policies",
           "load_plugins", "make_policy", "register"]
