"""What the NATS backend is told: connection, stream and consumer settings, and the server list."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from backends.settings import BackendSettings, default_of

# The header JetStream dedups on: a retried publish inside the duplicate window is stored once.
MSG_ID_HEADER = "Nats-Msg-Id"


def _default(name: str) -> Any:
    return default_of(BackendSettings, name)


@dataclass(frozen=True, slots=True)
class NatsConfig:
    """Connection, stream and consumer settings; defaults follow the spec.

    What the environment can set takes its default from `BackendSettings`
    (written once there); the rest is fixed here.
    """

    url: str = _default("nats_url")  # or several, comma-separated: the servers of one cluster
    replicas: int = _default("nats_replicas")  # stream replicas (R3 on a three-node cluster)
    stream: str = _default("nats_stream")
    subject: str = _default("nats_subject")
    durable: str = _default("nats_durable")
    ack_wait: float = _default("ack_wait")
    max_deliver: int = _default("max_deliver")
    max_ack_pending: int = _default("nats_max_ack_pending")
    max_age: float = 24 * 3600.0
    duplicate_window: float = _default("dedup_window")
    max_msgs: int = _default("nats_max_msgs")
    max_bytes: int = _default("nats_max_bytes")
    publish_timeout: float = _default("publish_timeout")
    connect_timeout: float = _default("nats_connect_timeout")
    reconnect_wait: float = _default("nats_reconnect_wait")
    pull_expires: float = _default("nats_pull_expires")
    dlq_stream: str = "DIPLOM_DLQ"
    dlq_subject: str = "diplom.dlq"
    dlq_max_age: float = 7 * 24 * 3600.0
    sync_always: bool = _default("nats_sync_always")
    monitor_url: str | None = _default("nats_monitor_url")
    # Credentials besides those a URL may carry (nats://user:pass@host, nats://token@host).
    # Kept out of repr, logs and error messages.
    user: str | None = _default("nats_user")
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    # TLS: the CA file that signed the server's certificate (None: the system's), and a client
    # certificate with its key (mutual TLS). Used for tls:// URLs and servers that require TLS.
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def clustered(self) -> bool:
        """More than one server or more than one replica: another leader can take over."""
        return self.replicas > 1 or len(server_list(self.url)) > 1

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for nats-py: None (nats-py's default) unless a CA or a client certificate is given."""
        if self.tls_ca is None and self.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        if self.tls_cert is not None:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


def server_list(url: str) -> list[str]:
    """`NATS_URL` as nats-py's server list: one URL, or several comma-separated (the nodes of a cluster)."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if not servers:
        raise ValueError("NATS_URL names no server")
    return servers


def monitor_list(url: str | None) -> list[str]:
    """`NATS_MONITOR_URL`, one base URL or several comma-separated; no trailing slash."""
    return [u.strip().rstrip("/") for u in (url or "").split(",") if u.strip()]


def redact(url: str) -> str:
    """The URL (or comma-separated URLs) without credentials, for logs and errors."""
    return ",".join(_redact_one(u) for u in url.split(","))


def _redact_one(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
