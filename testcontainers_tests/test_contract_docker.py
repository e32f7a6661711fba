"""The backend contract of `tests/test_backend_contract.py` against NATS in a container.

This directory's conftest makes `nats_server` a `DockerNats`; the class below
is the contract's NATS target for it (the tests that build their own
`ProcessNats` stay in the unit suite; `test_providers.py` has their twins).
"""

import pytest

from tests.test_backend_contract import NatsContract


@pytest.mark.docker
class TestDockerNats(NatsContract):
    """The contract on nats-server in a container (testcontainers)."""
