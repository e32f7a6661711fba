"""NATS over TLS with a CA file and a client certificate (mutual TLS), against a real nats-server.

The certificates are made here with the `openssl` command line: a CA, a
server certificate for 127.0.0.1 signed by it, a client certificate signed by
it, and a second CA that signed nothing this server knows. The server is a real
`nats-server` with a `tls {}` block and `verify: true` (it asks every client
for a certificate signed by its CA). Each case connects through the backend
the processor uses (`create_backend(load_settings(...))`), so the settings the
services read are what is tested.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.contract import BackendUnavailable, Message
from backends.factory import create_backend, load_settings
from backends.settings import ConfigError
from experiments.runtime.nats.process import ProcessNats

pytestmark = pytest.mark.spawns


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _signed(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    _ca(d, "ca")
    _ca(d, "other-ca")
    _signed(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _signed(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _signed(d, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n")
    return d


@pytest.fixture(scope="module")
def tls_nats(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessNats]:
    tls = (
        f'tls {{\n  cert_file: "{certs / "server.pem"}"\n  key_file: "{certs / "server.key"}"\n'
        f'  ca_file: "{certs / "ca.pem"}"\n  verify: true\n  timeout: 2\n}}\n'
    )
    with ProcessNats(tmp_path_factory.mktemp("nats-tls"), extra_config=tls) as server:
        yield server


def _tls_url(server: ProcessNats) -> str:
    return f"tls://127.0.0.1:{server.port}"


async def _publish_one(**settings: object) -> int:
    backend = create_backend(load_settings(queue_type="nats", nats_connect_timeout=2.0, **settings))
    await backend.connect()
    try:
        ack = await backend.publish(Message(id=uuid.uuid4().hex, source="tls", payload={"n": 1}))
        got = await backend.fetch(1, 2.0)
        assert [d.message.id for d in got] == [ack.message_id]
        for d in got:
            await d.ack()
        return ack.sequence
    finally:
        await backend.close()


async def test_tls_url_with_ca_and_client_certificate_publishes_and_consumes(
    tls_nats: ProcessNats, certs: Path
) -> None:
    seq = await _publish_one(
        nats_url=_tls_url(tls_nats),
        nats_tls_ca=str(certs / "ca.pem"),
        nats_tls_cert=str(certs / "client.pem"),
        nats_tls_key=str(certs / "client.key"),
    )
    assert seq >= 1


async def test_without_a_client_certificate_the_server_refuses(tls_nats: ProcessNats, certs: Path) -> None:
    with pytest.raises(BackendUnavailable) as err:
        await _publish_one(nats_url=_tls_url(tls_nats), nats_tls_ca=str(certs / "ca.pem"))
    assert "cannot connect to NATS at tls://127.0.0.1" in str(err.value)
    assert "CERTIFICATE_REQUIRED" in str(err.value)  # the server asked for one (verify: true)


async def test_a_client_certificate_from_another_ca_is_refused(tls_nats: ProcessNats, certs: Path) -> None:
    with pytest.raises(BackendUnavailable):
        await _publish_one(
            nats_url=_tls_url(tls_nats),
            nats_tls_ca=str(certs / "ca.pem"),
            nats_tls_cert=str(certs / "stranger.pem"),
            nats_tls_key=str(certs / "stranger.key"),
        )


async def test_without_the_ca_the_server_certificate_is_not_trusted(tls_nats: ProcessNats, certs: Path) -> None:
    with pytest.raises(BackendUnavailable) as err:
        await _publish_one(
            nats_url=_tls_url(tls_nats),
            nats_tls_cert=str(certs / "client.pem"),
            nats_tls_key=str(certs / "client.key"),
        )
    assert "TLS failed: NATS_TLS_CA names the CA" in str(err.value)


def test_tls_settings_are_checked_at_start(certs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NATS_TLS_CA="):
        load_settings(queue_type="nats", nats_tls_ca=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="NATS_TLS_CERT and NATS_TLS_KEY go together"):
        load_settings(queue_type="nats", nats_tls_cert=str(certs / "client.pem"))
