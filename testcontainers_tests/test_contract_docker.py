"""The backend contract of `tests/test_backend_contract.py`, unchanged, against NATS in a container.

The star import brings its test functions into this module; pytest collects
them here, where this directory's conftest makes `nats_server` a `DockerNats`.
(`test_sync_always_accepted_by_a_syncing_server` builds its own `ProcessNats`
and so still runs on a process; `test_providers.py` has its container twin.)
"""

import pytest

from tests.test_backend_contract import *  # noqa: F403

pytestmark = pytest.mark.docker
