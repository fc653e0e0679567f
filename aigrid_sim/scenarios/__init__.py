"""The shipped Hydra config tree (package data, composed as ``pkg://aigrid_sim.scenarios``).

``config.yaml`` holds every default; ``scenario/NAME.yaml`` overrides only what differs;
``apps/`` holds app mixes. A user's own scenarios live in a folder of their own with the same
layout (``scenario/MY.yaml``), added by ``aigrid-sim --config-dir MY_FOLDER scenario=MY``,
``AIGRID_SCENARIOS=MY_FOLDER`` or :func:`aigrid_sim.config.compose` (``config_dir=``).
"""
