"""aigrid-sim: a discrete-event simulator of a three-tier AI inference grid on real geography.

Quick use::

    import aigrid_sim
    result = aigrid_sim.run("global_agent", ["policy=centralised", "duration_s=60"])
    result.summary["latency_ms"], result.requests.head()
"""

from aigrid_sim import _compat, _native

_native.install()  # the compiled per-request path, if built from these very sources
_compat.install()  # old module paths (aigrid_sim.engine, aigrid_sim.policies, ...) keep working

from aigrid_sim.api import RunResult, run, run_config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["RunResult", "__version__", "run", "run_config"]
