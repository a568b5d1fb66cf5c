from __future__ import annotations

import pytest
from helpers import ServiceProcess

from sinew.common.testing.nats_server import NatsServer


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory):
    """One real nats-server for the session; tests stay apart by using their own site code."""
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_nats_server(tmp_path):
    """A server of the test's own, for tests that stop or restart it."""
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def stop_service_processes():
    """No service process outlives its test, whatever the test's outcome."""
    yield
    while ServiceProcess.started:
        ServiceProcess.started.pop().stop()
