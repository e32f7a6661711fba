"""What a run does to the system: load on a schedule, faults at a time, and the accounting by message id."""
