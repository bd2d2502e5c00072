"""host.db migrations run forward from every earlier version to the same schema a
fresh database gets, and keep the rows already there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ironclaw.host.store import database
from ironclaw.host.store.database import open_database
from ironclaw.host.store.schema import MIGRATIONS


def _schema(conn: object) -> list[tuple[str, str, str | None]]:
    return list(conn.execute(  # type: ignore[attr-defined]
        "SELECT type, name, sql FROM sqlite_master WHERE name != 'schema_version' "
        "ORDER BY type, name"))


@pytest.mark.parametrize("start", range(1, len(MIGRATIONS)))
def test_every_earlier_version_migrates_to_the_fresh_schema(
        start: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = os.urandom(32)
    fresh = open_database(tmp_path / "fresh.db", key)
    expected = _schema(fresh)
    fresh.close()

    # An older build: the same code with only the migrations it shipped.
    with monkeypatch.context() as older:
        older.setattr(database, "MIGRATIONS", MIGRATIONS[:start])
        old = open_database(tmp_path / "old.db", key)
        old.execute("INSERT INTO users (id, display_name, created_at) "
                    "VALUES ('u1', 'Kept', 1)")
        assert old.execute("SELECT max(version) FROM schema_version").fetchone()[0] == start
        old.close()

    migrated = open_database(tmp_path / "old.db", key)
    try:
        assert _schema(migrated) == expected
        assert migrated.execute("SELECT max(version) FROM schema_version").fetchone()[0] \
            == len(MIGRATIONS)
        assert migrated.execute("SELECT display_name FROM users").fetchall() == [("Kept",)]
    finally:
        migrated.close()
