"""The serving stage: the replica physics (GPU/model catalogue, step-time model, batching)."""

from aigrid_sim.serving.catalog import GPU, Catalog, Deployment, Model
from aigrid_sim.serving.steptime import SteadyState, StepTime, steady_state

__all__ = ["GPU", "Catalog", "Deployment", "Model", "SteadyState", "StepTime", "steady_state"]
