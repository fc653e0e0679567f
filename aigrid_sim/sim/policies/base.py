"""The routing-policy protocol, the request and grid views a policy sees, and the registry.

A policy is a pure decision: ``choose(request, view) -> site index`` (``>= 0``) or a negative
:class:`Reject` code. It reads the grid only through :class:`GridView`, which exposes no way to
change the grid; the engine applies the decision.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from aigrid_sim.errors import ConfigError
from aigrid_sim.sim.policies.request import Request

if TYPE_CHECKING:
    from aigrid_sim.sim.policies.view import GridView


class Reject(IntEnum):
    """Negative return values of ``choose``: reject the request, saying why."""

    NO_CAPABLE_SITE = -1
    POLICY = -2
    SOVEREIGNTY = -3  # no capable site inside the request's residency area (control plane)
    QUOTA = -4  # its tenant's quota at the chosen tier is used up (control plane)


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


# ----------------------------------------------------------------------------- plugins
#
# Trust model: a scenario file is data. It can name a registered policy, or a ``module:Class``
# whose module is already imported, but it cannot make the simulator import a module. Importing
# user code needs an opt-in the scenario file cannot give itself: the ``--plugins`` flag or a
# ``plugins=``/``policy=module:Class`` override typed on the command line, the ``plugins=``
# argument of ``aigrid_sim.run()``, or the ``AIGRID_PLUGINS`` environment variable.

PLUGINS_ENV = "AIGRID_PLUGINS"
_ALLOWED: set[str] = set()  # modules the user opted in to in this process (besides the env var)
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def allow_plugins(modules: list[str] | tuple[str, ...] | str | None, *,
                  export: bool = False) -> list[str]:
    """Opt in to importing ``modules`` (user policies) in this process; returns them as a list.

    ``modules`` may be a list or a comma-separated string. With ``export`` (the CLI), child
    processes of a sweep inherit the opt-in through ``$AIGRID_PLUGINS``, which this then sets.

    Raises:
        ConfigError: a name that is not a dotted module path.
    """
    if modules is None:
        return []
    if isinstance(modules, str):
        modules = [m for m in modules.split(",")]
    mods = [str(m).strip() for m in modules if str(m).strip()]
    for m in mods:
        if not _MODULE.match(m):
            raise ConfigError(f"plugins: {m!r} is not a module name (expected e.g. my_policies)")
    _ALLOWED.update(mods)
    if mods and export:
        env = [m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
        os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys([*env, *mods]))
    return mods


@contextlib.contextmanager
def plugins_allowed(modules: list[str] | tuple[str, ...] | str | None) -> Iterator[list[str]]:
    """Opt in to ``modules`` for the duration of a ``with`` block (one ``aigrid_sim.run()``)."""
    before = set(_ALLOWED)
    try:
        yield allow_plugins(modules)
    finally:
        _ALLOWED.clear()
        _ALLOWED.update(before)


def allowed_plugins() -> set[str]:
    """Modules the user opted in to (this process and ``$AIGRID_PLUGINS``)."""
    env = {m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()}
    return _ALLOWED | env


def _import_plugin(module: str) -> Any:
    """Import an opted-in module; the working directory is searched too (as ``python -m`` does).

    Raises:
        ConfigError: naming the module and the last line of its import error.
    """
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:  # appended, not prepended: a file in the cwd never shadows an installed module
        sys.path.append(cwd)
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 (a plugin's own bug, reported in one line)
        last = (traceback.format_exception_only(type(e), e)[-1]).strip()
        raise ConfigError(f"plugins: cannot import {module!r}: {last}") from None
    finally:
        if added:
            try:
                sys.path.remove(cwd)
            except ValueError:
                pass


def load_plugins(modules: list[str] | tuple[str, ...] = ()) -> None:
    """Import the opted-in plugins, and check that ``modules`` (the config's list) are among them.

    Every module the user opted in to (:func:`allow_plugins`, ``$AIGRID_PLUGINS``) is imported;
    its policies register on import. A module listed in the config's ``plugins`` key that the
    user did not opt in to is refused: a scenario file cannot import code.

    Raises:
        ConfigError: a module not opted in to, or one that fails to import.
    """
    allowed = allowed_plugins()
    for m in modules:
        if m not in allowed and m not in sys.modules:
            raise ConfigError(
                f"key 'plugins': {m!r} was not opted in to; a scenario file cannot import code. "
                f"Pass it on the command line (--plugins {m}, or plugins=[{m}]), as "
                f"aigrid_sim.run(..., plugins=[{m!r}]), or in ${PLUGINS_ENV}")
    for m in sorted(allowed):
        if m not in sys.modules:
            _import_plugin(m)


def _resolve(name: str) -> type:
    """The class a policy reference names: a registered name, or ``module:Class``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" not in name:
        raise ConfigError(f"key 'policy': unknown policy {name!r}; available: "
                          f"{', '.join(available_policies())} (or 'module:Class')")
    mod, _, attr = name.partition(":")
    if not _MODULE.match(mod) or not attr.isidentifier():
        raise ConfigError(f"key 'policy': {name!r} is not of the form module:Class")
    if mod not in sys.modules:
        if mod not in allowed_plugins():
            raise ConfigError(
                f"key 'policy': module {mod!r} is not loaded and was not opted in to; a scenario "
                f"file cannot import code. Pass --plugins {mod} (or plugins=[{mod}]) on the "
                f"command line, aigrid_sim.run(..., plugins=[{mod!r}]), or ${PLUGINS_ENV}={mod}")
        _import_plugin(mod)
    cls = getattr(sys.modules[mod], attr, None)
    if cls is None:
        raise ConfigError(f"key 'policy': module {mod!r} has no {attr!r}")
    if not (inspect.isclass(cls) and (issubclass(cls, BasePolicy)
                                      or cls in _REGISTRY.values())):
        raise ConfigError(f"key 'policy': {name!r} is not a routing policy (a registered policy "
                          f"or a subclass of aigrid_sim.sim.policies.BasePolicy)")
    return cls


def make_policy(name: str, params: dict[str, Any] | None = None) -> RoutingPolicy:
    """Instantiate a policy by registered name or ``module:Class`` path.

    Only registered policies and subclasses of :class:`BasePolicy` are ever called; a
    ``module:Class`` whose module is not imported yet needs the user's opt-in (see
    :func:`allow_plugins`). A policy from outside the package is fenced (:class:`FencedPolicy`).

    Raises:
        ConfigError: unknown policy, or parameters it does not take.
    """
    params = dict(params or {})
    cls = _resolve(str(name))
    sig = inspect.signature(cls)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in params if k not in sig.parameters and not accepts_any]
    if unknown:
        allowed = [p for p in sig.parameters if p not in ("self",)]
        raise ConfigError(f"key 'routing.params': policy {name!r} takes no {unknown}; "
                          f"it takes {allowed}")
    try:
        policy = cls(**params)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 (a user policy's constructor, in one line)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"key 'routing.params': policy {name!r}: {msg}") from None
    if not isinstance(policy, RoutingPolicy):
        raise ConfigError(f"key 'policy': {name!r} has no choose(request, view) method")
    if not type(policy).__module__.startswith("aigrid_sim."):
        policy = FencedPolicy(policy, str(name))
    return policy


class PolicyError(ConfigError):
    """A user policy raised or returned something that is not a decision (exit status 2)."""


class FencedPolicy:
    """Wraps a user policy: an exception or an invalid return ends the run with one line.

    The built-in policies are not wrapped, so their per-request path is unchanged.
    """

    def __init__(self, inner: RoutingPolicy, label: str):
        self.inner = inner
        self.label = label
        self.name = getattr(inner, "name", label)
        self._n = 0
        self._caps: tuple[int, ...] = ()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def bind(self, view: GridView) -> None:  # noqa: D102
        self._n = view.n_sites
        self._caps = view.capabilities
        try:
            self.inner.bind(view)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001
            raise PolicyError(f"policy {self.label!r}: bind() raised "
                              f"{_one_line(e)}") from None

    def choose(self, request: Request, view: GridView) -> int:  # noqa: D102
        try:
            s = self.inner.choose(request, view)
        except Exception as e:  # noqa: BLE001
            raise PolicyError(f"policy {self.label!r}: choose() raised {_one_line(e)} on "
                              f"{request!r}") from None
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise PolicyError(f"policy {self.label!r}: choose() returned {s!r} for {request!r}; "
                              f"expected a site index (int) or a Reject code")
        s = int(s)
        if s < 0:
            if s not in _REJECT_CODES:
                raise PolicyError(f"policy {self.label!r}: choose() returned {s} for {request!r}; "
                                  f"negative values must be Reject codes {sorted(_REJECT_CODES)}")
            return s
        if s >= self._n:
            raise PolicyError(f"policy {self.label!r}: choose() returned {s} for {request!r}; "
                              f"site indices are 0..{self._n - 1}")
        if self._caps[s] < request.capability:
            raise PolicyError(f"policy {self.label!r}: choose() returned site {s} "
                              f"(capability {self._caps[s]}) for {request!r}, which needs "
                              f"capability {request.capability}")
        return s


_REJECT_CODES = frozenset(int(r) for r in Reject)


def _one_line(e: BaseException) -> str:
    return traceback.format_exception_only(type(e), e)[-1].strip()
