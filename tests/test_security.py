"""Security: NATS credentials against a nats-server that requires them; no payload or secret in the logs.

The server is a real `nats-server` started with `authorization` (user and
password, or a token). The log test runs the whole stack at INFO with an API
key and a NATS password, sends a payload carrying a unique marker, forces a
reconnect, and greps every service log and the status answers for them.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends.contract import BackendUnavailable, Message
from backends.factory import create_backend, load_settings
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.ports import free_port
from experiments.runtime.stack import Stack, StackConfig
from services.settings import ConfigError, GatewaySettings, load

ROOT = Path(__file__).resolve().parents[1]

PASSWORD = "pw-" + uuid.uuid4().hex  # unique, so a grep finds only a leak
TOKEN = "tok-" + uuid.uuid4().hex


@pytest.fixture
def auth_nats(tmp_path: Path) -> Iterator[ProcessNats]:
    with ProcessNats(tmp_path / "nats-auth", user="queue", password=PASSWORD) as server:
        yield server


def with_creds(url: str, creds: str) -> str:
    return url.replace("nats://", f"nats://{creds}@")


async def publish_one(**settings: object) -> None:
    backend = create_backend(load_settings(queue_type="nats", nats_connect_timeout=2.0, **settings))
    await backend.connect()
    try:
        ack = await backend.publish(Message(id=uuid.uuid4().hex, source="auth", payload=1))
        assert ack.sequence >= 1
    finally:
        await backend.close()


async def test_user_and_password_in_the_url_or_as_settings(auth_nats: ProcessNats) -> None:
    await publish_one(nats_url=with_creds(auth_nats.url, f"queue:{PASSWORD}"))
    await publish_one(nats_url=auth_nats.url, nats_user="queue", nats_password=PASSWORD)


@pytest.mark.spawns
async def test_token_in_the_url_or_as_a_setting(tmp_path: Path) -> None:
    with ProcessNats(tmp_path / "nats-token", token=TOKEN) as server:
        await publish_one(nats_url=with_creds(server.url, TOKEN))
        await publish_one(nats_url=server.url, nats_token=TOKEN)
        with pytest.raises(BackendUnavailable):
            await publish_one(nats_url=server.url)


@pytest.mark.parametrize("how", ["url", "settings", "none"])
async def test_wrong_or_missing_credentials_fail_clearly_without_the_secret(auth_nats: ProcessNats, how: str) -> None:
    wrong = "wrong-" + PASSWORD
    settings: dict[str, object] = {"nats_url": auth_nats.url}
    if how == "url":
        settings["nats_url"] = with_creds(auth_nats.url, f"queue:{wrong}")
    elif how == "settings":
        settings.update(nats_user="queue", nats_password=wrong)
    with pytest.raises(BackendUnavailable) as err:
        await publish_one(**settings)
    text = str(err.value) + repr(err.value)
    assert "cannot connect to NATS at nats://" in text
    assert "the server refused the credentials: set NATS_USER and NATS_PASSWORD" in text  # says what to set
    if how == "url":
        assert f"nats://***@127.0.0.1:{auth_nats.port}" in text  # the URL is named, its credentials masked
    assert wrong not in text
    assert PASSWORD not in text


def test_secrets_stay_out_of_repr() -> None:
    s = load_settings(queue_type="nats", nats_password=PASSWORD, nats_token=TOKEN)
    backend = create_backend(s)
    for text in (repr(s), str(s), repr(backend.config)):  # type: ignore[attr-defined]
        assert PASSWORD not in text
        assert TOKEN not in text


@pytest.mark.e2e
async def test_services_log_no_payload_or_secret_at_info(tmp_path: Path) -> None:
    marker = "payload-marker-" + uuid.uuid4().hex
    api_key = "key-" + uuid.uuid4().hex
    nats = ProcessNats(tmp_path / "nats", user="queue", password=PASSWORD)
    nats.start()
    try:
        cfg = StackConfig(
            queue="nats",
            workers=2,
            env={"LOG_LEVEL": "INFO", "NATS_RECONNECT_WAIT": "0.2", "PUBLISH_TIMEOUT": "1"},
            processor_env={"NATS_URL": with_creds(nats.url, f"queue:{PASSWORD}")},
            gateway_env={"API_KEY": api_key},
        )
        with Stack(cfg, tmp_path / "stack", nats=nats) as stack:
            url = f"{stack.gateway_url}/api/v1/ingest"
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                ok = await client.post(url, json={"source": "s", "payload": marker}, headers={"X-API-Key": api_key})
                bad_key = await client.post(url, json={"source": "s", "payload": marker}, headers={"X-API-Key": marker})
                bad_body = await client.post(
                    url, json={"source": 1, "payload": marker, "x": marker}, headers={"X-API-Key": api_key}
                )
                nats.restart(hard=True)  # disconnect and reconnect: both are logged with the URL
                await asyncio.sleep(1.5)
                answers = [
                    (await client.get(f"{stack.gateway_url}/api/v1/status")).text,
                    (await client.get(f"{stack.processor_url}/health")).text,
                    (await client.get(f"{stack.processor_url}/stats")).text,
                ]
            assert (ok.status_code, bad_key.status_code, bad_body.status_code) == (202, 401, 422)
            logs = {s.name: s.log_path.read_text() for s in stack.services}
    finally:
        nats.close()
    processor_log = logs["processor-0"]
    assert "connected to NATS" in processor_log  # the URL is logged, with its password masked
    assert "nats://***@127.0.0.1" in processor_log
    assert "reconnected to NATS" in processor_log
    for name, text in [*logs.items(), *(("answer", a) for a in answers)]:
        for secret in (marker, PASSWORD, api_key):
            assert secret not in text, f"{secret[:12]}... appears in {name}"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "gateway.example"])
def test_gateway_settings_refuse_a_bind_beyond_loopback_without_a_key(host: str) -> None:
    with pytest.raises(ConfigError, match=rf"the gateway listens on {re.escape(host)} \(HOST\), beyond loopback"):
        load(GatewaySettings, host=host)
    with pytest.raises(ConfigError, match="API_KEY is not set"):
        load(GatewaySettings, host=host, api_key="")  # API_KEY= (empty) is no key
    assert load(GatewaySettings, host=host, api_key="k").api_key is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_gateway_on_loopback_may_run_without_a_key(host: str) -> None:
    assert load(GatewaySettings, host=host).api_key is None


@pytest.mark.spawns
def test_the_gateway_process_refuses_to_start_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    """docker/serve.py (the image's entry point, HOST 0.0.0.0 by default) exits with the reason; with a key
    it serves, and a request without the key is a 401."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "HOST")}
    env.update(PORT=str(port), INGEST_URL="http://127.0.0.1:9", PROCESSOR_URL="http://127.0.0.1:9")
    serve = [sys.executable, str(ROOT / "docker" / "serve.py"), "gateway"]
    refused = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert refused.returncode != 0
    assert "the gateway listens on 0.0.0.0 (HOST), beyond loopback, and API_KEY is not set" in refused.stderr

    key = "key-" + uuid.uuid4().hex
    with open(tmp_path / "gateway.log", "wb") as log:
        proc = subprocess.Popen(serve, env={**env, "API_KEY": key}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/ingest"
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.post(url, json={"source": "s", "payload": 1}, trust_env=False, timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
                assert time.monotonic() < deadline, "the gateway did not answer within 30 s"
                time.sleep(0.2)
        assert answer.status_code == 401
        assert "missing or wrong API key" in answer.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
