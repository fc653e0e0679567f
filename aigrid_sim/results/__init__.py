"""The results stage: records into tables, summaries, run folders, figures and sweep reports.

``rundir`` writes and reads run folders atomically; ``metrics`` turns records into tables and
summaries; ``plots`` draws figures from tables; ``report`` gathers many run folders.
"""

from aigrid_sim.results.rundir import (
                                       COMPLETE,
                                       config_hash,
                                       is_complete,
                                       load_run,
                                       run_folder_name,
                                       write_run,
)

__all__ = ["COMPLETE", "config_hash", "is_complete", "load_run", "run_folder_name", "write_run"]
