"""eventsourcing's own recorder test suites (``eventsourcing.tests.persistence``) run against the
recorders caselog records events with (infra/store/eventstore.py), on SQLite and on a real
PostgreSQL: each recorder as the library uses it (no writer attached) and as caselog uses it, its
inserts going through the group-commit writer (infra/store/writer.py). The aggregate, tracking and
process recorders are the library's, made by our factories (which add the connection string's
options).

The suites are the library's test methods, unchanged; only ``create_recorder`` is ours."""

from __future__ import annotations

import threading

import pytest
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.tests import persistence as suites
from eventsourcing.utils import Environment

from infra.bootstrap import event_store_env
from infra.settings import Settings
from infra.store.database import Database
from infra.store.writer import Writer


class Recorders:
    """The store a test case's recorders live in, opened per test by the ``_store`` fixture; every
    recorder made is closed at the end of the test."""

    settings: Settings
    with_writer = False
    opened: list

    def factory(self) -> InfrastructureFactory:
        env = Environment("caselog", event_store_env(self.settings))
        factory = InfrastructureFactory.construct(env)
        self.opened.append(factory)
        return factory

    def application_recorder(self):
        recorder = self.factory().application_recorder()
        if self.with_writer:
            db = Database(self.settings)
            self.opened.append(db)
            recorder.writer = Writer(db, recorder, runner=None, projections=[])
            self.opened.append(recorder.writer)
        return recorder


@pytest.fixture(autouse=True)
def _store(request, tmp_path):
    case = request.instance
    if "Postgres" in type(case).__name__:
        case.settings = Settings(data_dir=tmp_path, database_url=request.getfixturevalue("postgres_url"))
    else:
        case.settings = Settings(data_dir=tmp_path)
    case.opened = []
    before = set(threading.enumerate())
    yield
    # The library's concurrency tests set their reader threads' stop flag without joining them, so a
    # reader can still be inside a query when the test returns: closing the connection under it
    # crashed the interpreter (sqlite3: a segfault, seen in a full run and a partial one). They stop within
    # a sleep of 0.1 ms once flagged.
    for thread in set(threading.enumerate()) - before:
        if not thread.daemon:
            thread.join(timeout=30)
            assert not thread.is_alive(), f"{thread.name} still running 30 s after its test"
    for thing in reversed(case.opened):
        thing.close()


def suite(base, store: str, writer: bool, make):
    """A test case class of ``base`` on ``store`` whose create_recorder is ``make``."""
    name = f"Test{base.__name__.replace('TestCase', '').replace('BaseCase', '')}{store}{'Writer' if writer else ''}"
    return type(name, (Recorders, base), {"with_writer": writer, "create_recorder": make,
                                         "__module__": __name__, "__qualname__": name})


for _store_name in ("SQLite", "Postgres"):
    for _writer in (False, True):
        _case = suite(suites.ApplicationRecorderTestCase, _store_name, _writer, Recorders.application_recorder)
        globals()[_case.__name__] = _case
    _case = suite(suites.AggregateRecorderTestCase, _store_name, False, lambda self: self.factory().aggregate_recorder())
    globals()[_case.__name__] = _case
    _case = suite(suites.TrackingRecorderTestCase, _store_name, False, lambda self: self.factory().tracking_recorder())
    globals()[_case.__name__] = _case
    _case = suite(suites.ProcessRecorderTestCase, _store_name, False, lambda self: self.factory().process_recorder())
    globals()[_case.__name__] = _case

# eventsourcing's PostgreSQL recorder takes a table lock per insert so that notification ids of
# concurrent inserts never interleave; the writer's transaction takes the same lock
for _writer in (False, True):
    _case = suite(suites.NonInterleavingNotificationIDsBaseCase, "Postgres", _writer, Recorders.application_recorder)
    globals()[_case.__name__] = _case

del _case, _store_name, _writer
