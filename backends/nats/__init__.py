"""The NATS JetStream backend as a package, one job a module.

- `config`: `NatsConfig`, the server and monitor lists, credentials redaction
- `topology`: the stream, DLQ stream and consumer (create, check, fsync policy)
- `wire`: the hand-built HPUB/PUB batches; the only user of nats-py's private names
- `connection`: the client, `ready()`, the one background-task set
- `publisher`: publish / publish_many with one retry loop
- `consumer`: the pull buffer, fetch, deliveries, ack_many
- `advisories`: leader elections, max-deliveries -> DLQ, the meta leader
- `backend`: `NatsJetStreamBackend`, the facade the factory builds
"""

from backends.nats.backend import NatsJetStreamBackend
from backends.nats.config import NatsConfig, monitor_list, server_list
from backends.nats.consumer import NatsDelivery
from backends.nats.topology import consumer_config, dlq_stream_config, stream_config

__all__ = [
    "NatsConfig",
    "NatsDelivery",
    "NatsJetStreamBackend",
    "consumer_config",
    "dlq_stream_config",
    "monitor_list",
    "server_list",
    "stream_config",
]
