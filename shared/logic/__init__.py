"""Use cases. Entry points (API handler, worker loop, CLI) call these and nothing lower."""
