"""The routing-policy protocol, the request and grid views a policy sees, and the registry.

A policy is a pure decision: ``choose(request, view) -> site index`` (``>= 0``) or a negative
:class:`Reject` code. It reads the grid only through :class:`GridView`, which exposes no way to
change the grid; the engine applies the decision.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aigrid_sim.errors import ConfigError

if TYPE_CHECKING:
    from aigrid_sim.sim.policies.view import GridView


class Reject(IntEnum):
    """Negative return values of ``choose``: reject the request, saying why."""

    NO_CAPABLE_SITE = -1
    POLICY = -2
    SOVEREIGNTY = -3  # no capable site inside the request's residency area (control plane)
    QUOTA = -4  # its tenant's quota at the chosen tier is used up (control plane)


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


@runtime_checkable
class RoutingPolicy(Protocol):
    """What the engine needs of a policy."""

    def bind(self, view: GridView) -> None:
        """Check parameters against the world and precompute; called once before the run."""

    def choose(self, request: Request, view: GridView) -> int:
        """A site index, or a negative :class:`Reject` code."""


class BasePolicy:
    """Convenience base: parameters checked in ``__init__``, the world checked in ``bind``."""

    name = "base"

    def bind(self, view: GridView) -> None:  # noqa: D102
        self.view = view

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        raise NotImplementedError


_REGISTRY: dict[str, Callable[..., RoutingPolicy]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a policy selectable as ``policy=name``.

    Example:
        >>> @register("my_policy")
        ... class MyPolicy(BasePolicy):
        ...     def choose(self, request, view):
        ...         return view.candidates(request.origin, request.capability)[0]
    """
    def deco(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"policy name {name!r} is already registered by {_REGISTRY[name]}")
        _REGISTRY[name] = cls
        cls.name = name
        return cls
    return deco


def available_policies() -> list[str]:
    """Registered policy names."""
    return sorted(_REGISTRY)


def load_plugins(modules: list[str]) -> None:
    """Import user modules (which register their policies on import)."""
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise ConfigError(f"key 'plugins': cannot import {m!r} ({e})") from None


def make_policy(name: str, params: dict[str, Any] | None = None) -> RoutingPolicy:
    """Instantiate a policy by registered name or ``module:Class`` path.

    Raises:
        ConfigError: unknown policy, or parameters it does not take.
    """
    params = dict(params or {})
    if name in _REGISTRY:
        cls = _REGISTRY[name]
    elif ":" in name:
        mod, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"key 'policy': cannot load {name!r} ({e})") from None
    else:
        raise ConfigError(f"key 'policy': unknown policy {name!r}; available: "
                          f"{', '.join(available_policies())} (or 'module:Class')")
    sig = inspect.signature(cls)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in params if k not in sig.parameters and not accepts_any]
    if unknown:
        allowed = [p for p in sig.parameters if p not in ("self",)]
        raise ConfigError(f"key 'routing.params': policy {name!r} takes no {unknown}; "
                          f"it takes {allowed}")
    try:
        policy = cls(**params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"key 'routing.params': policy {name!r}: {e}") from None
    if not isinstance(policy, RoutingPolicy):
        raise ConfigError(f"key 'policy': {name!r} has no choose(request, view) method")
    return policy
