"""Training plumbing: what the entry point ``rnnlab.train`` relies on beside Lightning (the resume rules)."""
