"""Helpers for the inference tests: a one-site world on the normal engine path (scenario mmc)."""

from __future__ import annotations

from omegaconf import OmegaConf

from aigrid_sim.api import RunResult, run_config
from aigrid_sim.config import SimConfig, compose
from aigrid_sim.serving.catalog import Catalog


def one_replica_run(model: str, gpu: str, *, rate: float, requests: int, isl: float, osl: float,
                    in_cv: float = 0.0, out_cv: float = 0.0, replicas: int = 1,
                    drain_s: float = 0.0, seed: int = 1) -> RunResult:
    """Poisson ``rate`` requests/s of fixed (cv 0) or lognormal token counts to one site.

    The mmc scenario's one-site, zero-network world, with the site running ``model`` on ``gpu``
    and one generative app instead of mmc's fixed-service job.
    """
    dep = Catalog.default().deployment(model, gpu)
    cfg = compose("mmc", [f"servers={dep.gpus_per_replica * replicas}",
                          f"world.sites.0.gpu={gpu}", f"world.sites.0.model={model}",
                          f"arrival_rate={rate}", f"requests={requests}", f"drain_s={drain_s}",
                          f"seed={seed}"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain = {k: v for k, v in plain.items() if k in SimConfig.__dataclass_fields__}
    plain["workload"]["apps"] = [{
        "name": "chat", "share": 1.0, "capability": 1, "slo_ms": 1e9, "slo_on": "e2e",
        "service": {"kind": "tokens"},
        "tokens": {"in_mean": isl, "in_cv": in_cv, "out_mean": osl, "out_cv": out_cv,
                   "in_max": 32768, "out_max": 4096}}]
    return run_config(OmegaConf.create(plain))
