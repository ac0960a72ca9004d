"""The storage contracts (test_storage_contract.py, test_request_storage_contract.py) on an
SQLite store whose writes go to a forked writer process, as a worker of `atopos serve
--workers N` writes: every answer, and every error by its type (TicketUsed, Gone,
RequestTaken...), is the one of the writer thread of one process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from atopos.storage.sqlite import SqliteSecretStore
from tests.integration import test_request_storage_contract as requests_contract
from tests.integration import test_storage_contract as secrets_contract
from tests.integration.store_scenarios import StoreFactory, body, run_on, secret
from tests.integration.test_writer_process import writer_process
from tests.servers import ManualClock


# "sqlite": the contracts' own name for this adapter (one test reads it).
@pytest.fixture(params=["sqlite"])
def store_factory(tmp_path: Path) -> Iterator[StoreFactory]:
    database = tmp_path / "atopos.db"
    with writer_process(database) as socket_path:
        yield lambda: SqliteSecretStore(
            database, is_shared_by_processes=True, writer_socket=socket_path
        )


# Every test of both contracts, collected here again with the fixture above.
for _contract in (secrets_contract, requests_contract):
    for _name in dir(_contract):
        if _name.startswith("test_"):
            globals()[_name] = getattr(_contract, _name)


def test_a_store_on_a_hand_moved_clock_writes_through_the_writer_process(tmp_path: Path) -> None:
    """The deadline a worker sends is read by the writer process on the machine's monotonic
    clock, so it is taken on that clock too, never on the store's injected one: a clock a
    test moves by hand would make every write late (WritersBusy; here, one started at 0), or
    its lock wait endless (one started at the wall-clock time)."""
    database = tmp_path / "atopos.db"
    new = secret()
    with writer_process(database) as socket_path:
        factory: StoreFactory = lambda: SqliteSecretStore(  # noqa: E731
            database,
            ManualClock(0.0),
            is_shared_by_processes=True,
            writer_socket=socket_path,
        )

        async def scenario(store: object) -> int:
            assert isinstance(store, SqliteSecretStore)
            return await store.create(new, body(b"sealed"))

        assert run_on(factory, scenario) == len(b"sealed")
