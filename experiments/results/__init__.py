"""What a run leaves: the versioned result schema, stats, plots and the batch report (pure: reads, never measures)."""
