"""The SQLite state store: one claim per triggered id, phases only move forward, survives reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from keptn_gitops_service.errors import StateError
from keptn_gitops_service.state.store import Phase, SqliteStateStore


async def test_an_id_is_claimed_once_and_survives_a_restart(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s" / "state.sqlite3")
    record, created = await store.claim("id-1", "ctx", "sh.keptn.event.deployment.triggered", b"{}")
    assert created and record.phase is Phase.RECEIVED
    assert (await store.claim("id-1", "ctx", "sh.keptn.event.deployment.triggered", b"{}"))[1] is False
    await store.advance("id-1", Phase.COMMITTED, commit="a" * 40)
    await store.close()
    reopened = SqliteStateStore(tmp_path / "s" / "state.sqlite3")
    again, created = await reopened.claim("id-1", "ctx", "t", b"")
    assert not created and again.phase is Phase.COMMITTED and again.commit == "a" * 40 and again.payload == b"{}"
    assert [r.triggered_id for r in await reopened.unfinished()] == ["id-1"]


async def test_phases_never_move_backwards_and_finished_is_not_unfinished(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.sqlite3")
    await store.claim("id", "ctx", "t", b"")
    await store.advance("id", Phase.FINISHED, commit="c", result="pass")
    record = await store.advance("id", Phase.STARTED)
    assert (record.phase, record.commit, record.result) == (Phase.FINISHED, "c", "pass")
    assert await store.unfinished() == []


async def test_unknown_ids_and_unusable_files_are_state_errors(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.sqlite3")
    with pytest.raises(StateError, match="no state recorded for event nope"):
        await store.advance("nope", Phase.STARTED)
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(StateError, match="cannot open the state store"):
        SqliteStateStore(tmp_path / "dir.sqlite3")


async def test_the_event_loop_runs_while_a_call_waits_for_the_database(tmp_path: Path) -> None:
    """A durable write can wait on the disk or a lock: other coroutines (probes, other triggers) go on meanwhile."""
    import asyncio
    import sqlite3

    path = tmp_path / "state.sqlite3"
    store = SqliteStateStore(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the store's insert now waits (sqlite's busy timeout)
    claim = asyncio.create_task(store.claim("id", "ctx", "t", b"{}"))
    ticks = 0
    while ticks < 50:  # the loop keeps running other work while the claim is blocked
        await asyncio.sleep(0)
        ticks += 1
    assert not claim.done()
    blocker.execute("COMMIT")
    blocker.close()
    record, created = await claim
    assert created and record.triggered_id == "id"
    await store.close()


async def test_concurrent_calls_share_one_commit_and_each_returns_once_it_is_committed(tmp_path: Path) -> None:
    """Group commit: the calls made while the store's thread is busy run in one transaction, one wait for the disk;
    a caller returns only once its batch is committed, and one failing call fails only itself."""
    import asyncio
    import sqlite3

    path = tmp_path / "state.sqlite3"
    store = SqliteStateStore(path)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # what SQLite was asked to run, transactions included
    ids = [f"id-{i}" for i in range(20)]
    calls = [store.claim(i, "ctx", "t", i.encode()) for i in ids + ids]  # each id twice: claimed once
    results = await asyncio.gather(*calls, store.advance("unknown", Phase.STARTED), return_exceptions=True)
    *claims, unknown = results
    assert isinstance(unknown, StateError) and "no state recorded for event unknown" in str(unknown)
    created = [r[1] for r in claims if isinstance(r, tuple)]
    assert len(created) == 40 and created.count(True) == 20
    commits = statements.count("COMMIT")
    assert 1 <= commits < 10, statements  # 41 calls, a handful of transactions (the first call runs alone)
    reader = sqlite3.connect(path)  # another connection sees only what is committed
    assert reader.execute("SELECT COUNT(*) FROM triggers").fetchone() == (20,)
    reader.close()
    await store.close()
    reopened = SqliteStateStore(path)
    assert sorted(r.triggered_id for r in await reopened.unfinished()) == sorted(ids)
    await reopened.close()
