"""Studies built on runs: capacity planner, validation, benchmark, queueing theory, headline."""
