"""Task execution in the cloud: the task ledger (results once) and the huey queue that runs it."""
