"""The one nats-server launcher (keptn_gitops_sim.natsd.NatsServer), through the shared ``nats_server`` fixture."""

from __future__ import annotations

import socket
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from keptn_gitops_service.errors import TransportError
from keptn_gitops_sim.natsd import NatsServer


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.jetstream
async def test_a_restart_comes_back_on_the_same_port_with_the_same_jetstream_store(nats_server: NatsServer) -> None:
    url = nats_server.url
    nc = await nats.connect(url)
    await nc.jetstream().add_stream(StreamConfig(name="keptn", subjects=["sh.keptn.>"]))
    await nc.jetstream().publish("sh.keptn.event.deployment.triggered", b"{}")
    await nc.close()
    pid = nats_server.pid
    assert pid is not None and running(pid)

    nats_server.stop()
    assert nats_server.pid is None and not running(pid), "stopped by its PID, nothing left running"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", nats_server.port), timeout=1).close()

    assert nats_server.start() == url
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("keptn")
        assert info.state.messages == 1
    finally:
        await nc.close()


async def test_without_the_jetstream_mark_the_server_is_core_nats_only(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        assert not nc._server_info.get("jetstream")
    finally:
        await nc.close()


def test_a_taken_port_is_refused_rather_than_mistaken_for_a_started_server(nats_server: NatsServer) -> None:
    second = NatsServer(port=nats_server.port)
    with pytest.raises(TransportError, match=f"cannot start on port {nats_server.port}: something else listens"):
        second.start()
    assert second.pid is None


def test_a_server_that_exits_at_start_says_why_from_its_log(tmp_path: Path) -> None:
    store = tmp_path / "not-a-directory"
    store.write_text("a file where the JetStream store should be\n")
    server = NatsServer(jetstream=True, store_dir=store)
    with pytest.raises(TransportError, match=f"nats-server did not start on port {server.port}: .+"):
        server.start()
    assert server.pid is None


def test_jetstream_needs_a_store_directory() -> None:
    with pytest.raises(ValueError, match="store directory"):
        NatsServer(jetstream=True)


async def test_two_servers_get_their_own_free_loopback_ports() -> None:
    async with NatsServer() as first, NatsServer() as second:
        assert first != second and all(url.startswith("nats://127.0.0.1:") for url in (first, second))
        for url in (first, second):
            nc = await nats.connect(url)
            await nc.close()
