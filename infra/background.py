"""The embedded process's background work beside the HTTP API: projections kept from the
notification log, the scheduler (once this process holds the store's scheduler lock) and the
Kafka relay when one is configured; started and stopped with the app's lifespan."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI

from infra.bootstrap import System


def start_background(system: System, api: FastAPI) -> None:
    """Projections poll the notification log (SQLite has no subscription); the scheduler
    runs in process on the real clock."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(1.0):
            try:
                system.catch_up()
            except Exception:  # noqa: BLE001 - retried on the next poll
                pass

    from infra.seals import periodic_sealer, start_periodic
    from scheduler.service import Leadership

    leader = Leadership(system.db)
    sealer = periodic_sealer(system)

    def lead() -> None:
        """Run the scheduler (and the periodic sealer) here once no other process holds the store's
        scheduler lock."""
        while not stop.is_set():
            if leader.try_acquire():
                system.scheduler.start()
                if sealer is not None:
                    start_periodic(system, sealer, stop)
                return
            stop.wait(5.0)

    relay = system.relay() if system.settings.kafka_bootstrap else None

    def run_relay() -> None:
        from infra.kafka.relay import RelayStopped

        try:
            relay.run(stop, report=logging.getLogger("caselog.relay").warning)
        except RelayStopped:  # (logged by the relay) a `caselog relay --shard` layout took the topic over:
            pass  # the API goes on; those relays publish

    def _start() -> None:
        system.catch_up()
        threading.Thread(target=poll, name="projections", daemon=True).start()
        if relay is not None:
            threading.Thread(target=run_relay, name="relay", daemon=True).start()
        if not getattr(system.clock, "manual", False):
            threading.Thread(target=lead, name="scheduler-leadership", daemon=True).start()

    def _stop() -> None:
        stop.set()
        system.scheduler.stop()
        leader.release()
        if relay is not None:
            relay.close()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        _start()
        try:
            yield
        finally:
            _stop()

    api.router.lifespan_context = lifespan  # FastAPI's replacement for on_event startup/shutdown

