"""The experiment harness: NATS lifecycle, benchmarks, and (later) load, faults and papermill batches."""
