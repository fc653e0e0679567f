"""The serving stage: the replica physics (GPU/model catalogue, step-time model, batching)."""

from aigrid_sim.serving.catalog import GPU, Catalog, Deployment, Model

__all__ = ["GPU", "Catalog", "Deployment", "Model"]
