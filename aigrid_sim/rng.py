"""Per-component random streams from one run seed.

Each component asks for its stream by name; the name (not the order of asking) picks an
independent child of the run's ``SeedSequence``, so changing how many numbers one component draws
never shifts another's. No global random state is touched anywhere in the package.
"""

from __future__ import annotations

import random
import zlib

import numpy as np


def _seq(seed: int, name: str) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(zlib.crc32(name.encode()),))


def generator(seed: int, name: str) -> np.random.Generator:
    """A numpy Generator for component ``name`` of the run seeded ``seed``."""
    return np.random.Generator(np.random.PCG64(_seq(seed, name)))


def py_random(seed: int, name: str) -> random.Random:
    """A stdlib Random (cheap scalar draws in the per-request path) for component ``name``."""
    return random.Random(int(_seq(seed, name).generate_state(2, np.uint64)[0]))
