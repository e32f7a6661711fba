"""Queue backends behind one contract; `backends.factory` picks one from QUEUE_TYPE."""

from backends.contract import (
    AlreadySettled,
    BackendMisconfigured,
    BackendUnavailable,
    Delivery,
    Message,
    PublishAck,
    QueueBackend,
    QueueError,
    QueueFull,
    QueueStats,
)

__all__ = [
    "AlreadySettled",
    "BackendMisconfigured",
    "BackendUnavailable",
    "Delivery",
    "Message",
    "PublishAck",
    "QueueBackend",
    "QueueError",
    "QueueFull",
    "QueueStats",
]
