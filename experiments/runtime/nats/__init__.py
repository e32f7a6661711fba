"""NATS JetStream for a run: a local `nats-server` process or a container, behind one protocol."""
