"""Real processes and where they run: pids, the service stack, NATS providers, the environment record."""
