"""Key custody: master file, purpose sub-keys, sealed session secrets, rotation, hand-off."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironclaw.contract.ids import InvalidId, SessionId, new_session_id
from ironclaw.host.keys import (
    FileMasterKeySource,
    KeyCustodyError,
    KeyFilePermissionError,
    KeyNotFound,
    KeyStore,
    KeyStoreCorrupt,
    KeyStoreUnusable,
    MasterKeyCorrupt,
    MasterKeyMissing,
    MasterKeyPermissionError,
    Purpose,
    UnsealError,
    derive_subkey,
    master_fingerprint,
    write_session_key_file,
)
from ironclaw.host.keys.sealing import seal_session_secret, unseal_session_secret

session_ids = st.from_regex(r"ses_[0-9a-f]{16,64}", fullmatch=True)


def open_store(state: Path) -> KeyStore:
    return KeyStore.open(state, FileMasterKeySource.in_state_dir(state))


def master_path(state: Path) -> Path:
    return state / "keys" / "master.key"


def store_path(state: Path) -> Path:
    return state / "keys" / "sealed-keys.json"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_master(state: Path) -> bytes:
    return master_path(state).read_bytes()[5:]


def edit_store(state: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = store_path(state)
    document = json.loads(path.read_bytes())
    edit(document)
    path.write_text(json.dumps(document))


# --- master key file -----------------------------------------------------------------


def test_fresh_state_creates_private_master_store_and_directory(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        fingerprint = store.master_fingerprint

    data = master_path(tmp_path).read_bytes()
    assert len(data) == 37 and data.startswith(b"ICMK\x01")
    assert mode_of(master_path(tmp_path)) == 0o600
    assert mode_of(store_path(tmp_path)) == 0o600
    assert mode_of(tmp_path / "keys") == 0o700
    assert master_path(tmp_path).stat().st_uid == os.geteuid()
    assert fingerprint == master_fingerprint(data[5:])
    assert json.loads(store_path(tmp_path).read_bytes())["master_fingerprint"] == fingerprint


def test_each_fresh_master_is_random(tmp_path: Path) -> None:
    open_store(tmp_path / "a").close()
    open_store(tmp_path / "b").close()
    assert read_master(tmp_path / "a") != read_master(tmp_path / "b")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700, 0o400, 0o000])
def test_master_key_file_not_mode_0600_is_refused(tmp_path: Path, mode: int) -> None:
    open_store(tmp_path).close()
    master_path(tmp_path).chmod(mode)

    with pytest.raises(MasterKeyPermissionError, match=f"mode {mode:o}"):
        FileMasterKeySource.in_state_dir(tmp_path).load()
    with pytest.raises(MasterKeyPermissionError):
        open_store(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_master_key_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    os.chown(master_path(tmp_path), 12345, -1)

    with pytest.raises(MasterKeyPermissionError, match="owned by uid 12345"):
        open_store(tmp_path)


def test_master_key_symlink_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    real = tmp_path / "keys" / "elsewhere.key"
    master_path(tmp_path).rename(real)
    master_path(tmp_path).symlink_to(real)

    with pytest.raises(MasterKeyPermissionError):
        open_store(tmp_path)


def test_key_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    (tmp_path / "keys").chmod(0o777)

    with pytest.raises(KeyFilePermissionError, match="writable by group or others"):
        open_store(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"ICMK\x01" + b"k" * 31,
        b"ICMK\x01" + b"k" * 33,
        b"XXXX\x01" + b"k" * 32,
        b"ICMK\x02" + b"k" * 32,
        b"k" * 37,
    ],
    ids=["empty", "short", "long", "bad-magic", "bad-version", "raw-key-no-header"],
)
def test_malformed_master_key_file_is_corrupt(tmp_path: Path, content: bytes) -> None:
    open_store(tmp_path).close()
    master_path(tmp_path).write_bytes(content)

    with pytest.raises(MasterKeyCorrupt):
        FileMasterKeySource.in_state_dir(tmp_path).load()


def test_create_never_overwrites_an_existing_master(tmp_path: Path) -> None:
    source = FileMasterKeySource.in_state_dir(tmp_path)
    first = source.create()

    with pytest.raises(KeyCustodyError, match="already exists"):
        source.create()
    assert source.load() == first


def test_missing_master_with_existing_store_is_refused_not_replaced(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.ensure_session(new_session_id())
    master_path(tmp_path).unlink()

    with pytest.raises(MasterKeyMissing):
        open_store(tmp_path)
    assert not master_path(tmp_path).exists()


# --- purpose sub-keys ----------------------------------------------------------------


def test_subkeys_are_hmac_sha256_of_the_label_deterministic_and_distinct() -> None:
    master = bytes(range(32))
    keys = {purpose: derive_subkey(master, purpose) for purpose in Purpose}

    assert len(set(keys.values())) == len(Purpose)
    assert master not in keys.values()
    for purpose, key in keys.items():
        expected = hmac.new(master, purpose.value.encode(), hashlib.sha256).digest()
        assert key == expected == derive_subkey(master, purpose.value)
    assert derive_subkey(bytes(32), Purpose.HOST_DB) != keys[Purpose.HOST_DB]


def test_purpose_labels_are_versioned_and_unique() -> None:
    labels = [purpose.value for purpose in Purpose]
    assert len(labels) == len(set(labels))
    assert all(re.fullmatch(r"ironclaw/[a-z0-9-]+/v[0-9]+", label) for label in labels)


def test_store_subkeys_come_from_the_sealed_root_not_the_master(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        audit = store.subkey(Purpose.AUDIT_CHAIN)
        # Not derivable from the master alone: the sealed root secret is needed too.
        assert audit != derive_subkey(read_master(tmp_path), Purpose.AUDIT_CHAIN)
    with open_store(tmp_path) as store:
        assert store.subkey(Purpose.AUDIT_CHAIN) == audit  # stable across reopen
        assert store.subkey("ironclaw/host-db/v1") != store.subkey(Purpose.API_TOKEN_HASH)
        for reserved in (Purpose.SESSION_KEY_WRAP, Purpose.MASTER_FINGERPRINT):
            with pytest.raises(ValueError, match="reserved"):
                store.subkey(reserved)
        with pytest.raises(ValueError):
            store.subkey("ironclaw/made-up/v1")


# --- sealed session secrets ----------------------------------------------------------


def test_session_secret_is_created_once_and_read_back(tmp_path: Path) -> None:
    sid = new_session_id()
    with open_store(tmp_path) as store:
        secret = store.ensure_session(sid)
        assert len(secret) == 64
        assert store.ensure_session(sid) == secret
        assert store.get_session(sid) == secret
        assert store.session_ids() == {sid}
        assert store.ensure_session(new_session_id()) != secret


def test_unknown_session_is_key_not_found(tmp_path: Path) -> None:
    with open_store(tmp_path) as store, pytest.raises(KeyNotFound):
        store.get_session(new_session_id())


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ses_XYZ", "ses_" + "a" * 15, ""])
def test_malformed_session_id_is_rejected(tmp_path: Path, bad: str) -> None:
    with open_store(tmp_path) as store:
        with pytest.raises(InvalidId):
            store.ensure_session(bad)
        with pytest.raises(InvalidId):
            store.get_session(bad)


def test_caller_chooses_length_within_bounds(tmp_path: Path) -> None:
    sid = new_session_id()
    with open_store(tmp_path) as store:
        assert len(store.ensure_session(sid, 32)) == 32
        with pytest.raises(ValueError, match="already has a 32-byte secret"):
            store.ensure_session(sid)
        for length in (0, 15, 1025):
            with pytest.raises(ValueError):
                store.ensure_session(new_session_id(), length)


def test_deleted_session_is_gone_and_stays_gone(tmp_path: Path) -> None:
    keep, drop = new_session_id(), new_session_id()
    with open_store(tmp_path) as store:
        kept = store.ensure_session(keep)
        store.ensure_session(drop)
        assert store.delete_session(drop) is True
        assert store.delete_session(drop) is False
        with pytest.raises(KeyNotFound):
            store.get_session(drop)

    with open_store(tmp_path) as reopened:
        assert reopened.session_ids() == {keep}
        assert reopened.get_session(keep) == kept
    assert drop not in store_path(tmp_path).read_text()


def test_secrets_survive_close_and_reopen(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        secrets = {sid: store.ensure_session(sid) for sid in (new_session_id() for _ in range(5))}
        fingerprint = store.master_fingerprint

    with open_store(tmp_path) as reopened:
        assert reopened.master_fingerprint == fingerprint
        assert reopened.session_ids() == set(secrets)
        for sid, secret in secrets.items():
            assert reopened.get_session(sid) == secret


def test_store_file_never_contains_a_secret_or_the_master(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        secrets = [store.ensure_session(new_session_id()) for _ in range(3)]
        secrets.append(store.subkey(Purpose.HOST_DB))
    secrets.append(read_master(tmp_path))

    on_disk = store_path(tmp_path).read_bytes()
    for secret in secrets:
        for part in (secret, secret[:32], secret[-32:]):
            assert part not in on_disk
            assert part.hex().encode() not in on_disk
            assert part.hex().upper().encode() not in on_disk
            for shift in range(3):
                # Drop the last group: it depends on what follows and may be padded.
                assert base64.b64encode(part[shift:])[:-4] not in on_disk


def test_a_blob_moved_to_another_session_does_not_unseal(tmp_path: Path) -> None:
    victim, attacker = new_session_id(), new_session_id()
    with open_store(tmp_path) as store:
        store.ensure_session(victim)
        store.ensure_session(attacker)

    def move(document: dict[str, Any]) -> None:
        document["sessions"][attacker] = document["sessions"][victim]

    edit_store(tmp_path, move)
    with pytest.raises(UnsealError, match=attacker):
        open_store(tmp_path)


def test_a_tampered_blob_does_not_unseal(tmp_path: Path) -> None:
    sid = new_session_id()
    with open_store(tmp_path) as store:
        store.ensure_session(sid)

    def flip_a_bit(document: dict[str, Any]) -> None:
        blob = bytearray(base64.b64decode(document["sessions"][sid]))
        blob[20] ^= 1
        document["sessions"][sid] = base64.b64encode(bytes(blob)).decode()

    edit_store(tmp_path, flip_a_bit)
    with pytest.raises(UnsealError):
        open_store(tmp_path)


def test_a_wrong_master_cannot_unseal(tmp_path: Path) -> None:
    with open_store(tmp_path / "a") as store:
        store.ensure_session(new_session_id())
    open_store(tmp_path / "b").close()
    shutil.copy(store_path(tmp_path / "a"), store_path(tmp_path / "b"))

    # Refused by the fingerprint check...
    with pytest.raises(UnsealError, match="sealed under master"):
        open_store(tmp_path / "b")

    # ...and, were the fingerprint forged, by AES-GCM itself.
    forged = master_fingerprint(read_master(tmp_path / "b"))
    edit_store(tmp_path / "b", lambda document: document.update(master_fingerprint=forged))
    with pytest.raises(UnsealError, match="does not authenticate"):
        open_store(tmp_path / "b")


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b'{"format": "ironclaw-sealed-keys"}'],
    ids=["empty", "not-json", "list", "missing-fields"],
)
def test_malformed_store_file_is_corrupt(tmp_path: Path, content: bytes) -> None:
    open_store(tmp_path).close()
    store_path(tmp_path).write_bytes(content)
    with pytest.raises(KeyStoreCorrupt):
        open_store(tmp_path)


def test_store_entry_with_bad_session_id_or_base64_is_corrupt(tmp_path: Path) -> None:
    sid = new_session_id()
    with open_store(tmp_path) as store:
        store.ensure_session(sid)
    edit_store(tmp_path, lambda document: document["sessions"].update({"../x": "AAAA"}))
    with pytest.raises(KeyStoreCorrupt):
        open_store(tmp_path)
    edit_store(tmp_path, lambda document: document["sessions"].pop("../x"))
    edit_store(tmp_path, lambda document: document["sessions"].update({sid: "!!"}))
    with pytest.raises(KeyStoreCorrupt):
        open_store(tmp_path)


def test_store_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    store_path(tmp_path).chmod(0o644)
    with pytest.raises(KeyFilePermissionError):
        open_store(tmp_path)


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.close()
    with pytest.raises(KeyStoreUnusable):
        store.ensure_session(new_session_id())


def test_sealing_binds_the_session_id_and_key() -> None:
    wrap_key, other_key = os.urandom(32), os.urandom(32)
    sid, other = SessionId("ses_" + "a" * 16), SessionId("ses_" + "b" * 16)
    blob = seal_session_secret(wrap_key, sid, b"s" * 64)

    assert unseal_session_secret(wrap_key, sid, blob) == b"s" * 64
    assert seal_session_secret(wrap_key, sid, b"s" * 64)[:12] != blob[:12]
    for key, session in ((wrap_key, other), (other_key, sid)):
        with pytest.raises(UnsealError):
            unseal_session_secret(key, session, blob)
    with pytest.raises(UnsealError, match="truncated"):
        unseal_session_secret(wrap_key, sid, blob[:27])


@pytest.fixture(scope="module")
def shared_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-keys")


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sid=session_ids)
def test_any_valid_session_id_round_trips_through_disk(shared_state: Path, sid: str) -> None:
    with open_store(shared_state) as store:
        secret = store.ensure_session(sid)
    with open_store(shared_state) as reopened:
        assert reopened.get_session(sid) == secret


@settings(max_examples=60, database=None)
@given(sid=session_ids, other=session_ids, secret=st.binary(min_size=16, max_size=128))
def test_a_blob_unseals_only_under_its_own_session_id(sid: str, other: str, secret: bytes) -> None:
    wrap_key = derive_subkey(bytes(32), Purpose.SESSION_KEY_WRAP)
    blob = seal_session_secret(wrap_key, SessionId(sid), secret)
    assert secret not in blob
    if other == sid:
        assert unseal_session_secret(wrap_key, SessionId(other), blob) == secret
    else:
        with pytest.raises(UnsealError):
            unseal_session_secret(wrap_key, SessionId(other), blob)


async def test_concurrent_worker_threads_agree_on_one_secret_per_session(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    sids = [new_session_id() for _ in range(4)]
    seen: dict[str, set[bytes]] = {sid: set() for sid in sids}

    async def ensure(sid: str) -> None:
        seen[sid].add(await trio.to_thread.run_sync(store.ensure_session, sid))

    async with trio.open_nursery() as nursery:
        for sid in sids * 8:
            nursery.start_soon(ensure, sid)
    store.close()

    with open_store(tmp_path) as reopened:
        for sid in sids:
            assert seen[sid] == {reopened.get_session(sid)}


# --- rotation ------------------------------------------------------------------------


def populate(state: Path, count: int = 4) -> dict[SessionId, bytes]:
    with open_store(state) as store:
        return {sid: store.ensure_session(sid) for sid in (new_session_id() for _ in range(count))}


def test_rotation_rewraps_every_secret_under_a_new_master(tmp_path: Path) -> None:
    secrets = populate(tmp_path)
    old_master_file = tmp_path / "old-master.key"
    shutil.copy2(master_path(tmp_path), old_master_file)
    old_store_bytes = store_path(tmp_path).read_bytes()

    with open_store(tmp_path) as store:
        old_fingerprint = store.master_fingerprint
        old_audit_key = store.subkey(Purpose.AUDIT_CHAIN)
        old_host_db_key = store.subkey(Purpose.HOST_DB)
        new_fingerprint = store.rotate_master()
        assert new_fingerprint == store.master_fingerprint != old_fingerprint
        # host.db and the audit chain stay readable: their keys survive the rotation.
        assert store.subkey(Purpose.AUDIT_CHAIN) == old_audit_key
        assert store.subkey(Purpose.HOST_DB) == old_host_db_key
        for sid, secret in secrets.items():
            assert store.get_session(sid) == secret

    assert master_fingerprint(read_master(tmp_path)) == new_fingerprint
    assert not (tmp_path / "keys" / "master.key.next").exists()
    assert mode_of(master_path(tmp_path)) == 0o600
    new_store = json.loads(store_path(tmp_path).read_bytes())
    old_store = json.loads(old_store_bytes)
    for sid in secrets:
        assert new_store["sessions"][sid] != old_store["sessions"][sid]
    assert new_store["root"] != old_store["root"]  # the root is re-sealed, not copied

    with open_store(tmp_path) as reopened:
        for sid, secret in secrets.items():
            assert reopened.get_session(sid) == secret

    # The old master, even with the fingerprint forged to match, opens nothing.
    intruder = tmp_path / "intruder"
    open_store(intruder).close()
    shutil.copy2(old_master_file, master_path(intruder))
    shutil.copy(store_path(tmp_path), store_path(intruder))
    with pytest.raises(UnsealError):
        open_store(intruder)
    forged = master_fingerprint(old_master_file.read_bytes()[5:])
    edit_store(intruder, lambda document: document.update(master_fingerprint=forged))
    with pytest.raises(UnsealError, match="does not authenticate"):
        open_store(intruder)


class SimulatedCrash(BaseException):
    """Stands for the process dying; BaseException so no ``except Exception`` eats it."""


@contextmanager
def publish_steps(
    monkeypatch: pytest.MonkeyPatch, on_step: Callable[[int, str, str], None]
) -> Iterator[None]:
    """Intercept every rename and link: the only moments a key file changes on disk."""
    counter = itertools.count()

    def wrap(real: Callable[..., None]) -> Callable[..., None]:
        def publish(source: Any, destination: Any, *args: Any, **kwargs: Any) -> None:
            index = next(counter)
            on_step(index, "before", Path(destination).name)
            real(source, destination, *args, **kwargs)
            on_step(index, "after", Path(destination).name)

        return publish

    with monkeypatch.context() as patch:
        patch.setattr(os, "link", wrap(os.link))
        patch.setattr(os, "replace", wrap(os.replace))
        yield


ROTATION_STEPS = ["master.key.next", "sealed-keys.json", "master.key"]


def test_rotation_publishes_successor_then_store_then_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(tmp_path, 1)
    published: list[str] = []

    def record(_index: int, when: str, name: str) -> None:
        if when == "after":
            published.append(name)

    with open_store(tmp_path) as store, publish_steps(monkeypatch, record):
        store.rotate_master()
    assert published == ROTATION_STEPS


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", range(len(ROTATION_STEPS)), ids=ROTATION_STEPS)
def test_rotation_interrupted_at_any_step_recovers_every_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int, when: str
) -> None:
    secrets = populate(tmp_path)
    old_fingerprint = master_fingerprint(read_master(tmp_path))
    store = open_store(tmp_path)

    def crash(index: int, moment: str, _name: str) -> None:
        if (index, moment) == (step, when):
            raise SimulatedCrash

    with publish_steps(monkeypatch, crash), pytest.raises(SimulatedCrash):
        store.rotate_master()
    with pytest.raises(KeyStoreUnusable):
        store.ensure_session(new_session_id())
    with pytest.raises(KeyStoreUnusable):
        store.rotate_master()

    store_landed = step > 1 or (step == 1 and when == "after")
    with open_store(tmp_path) as recovered:
        if store_landed:
            assert recovered.master_fingerprint != old_fingerprint
        else:
            assert recovered.master_fingerprint == old_fingerprint
        assert master_fingerprint(read_master(tmp_path)) == recovered.master_fingerprint
        for sid, secret in secrets.items():
            assert recovered.get_session(sid) == secret
        survivors = sorted(path.name for path in (tmp_path / "keys").iterdir())
        assert survivors == ["master.key", "sealed-keys.json"]
        recovered.rotate_master()
        late = recovered.ensure_session(new_session_id())

    with open_store(tmp_path) as again:
        assert set(secrets) < again.session_ids()
        assert late in {again.get_session(sid) for sid in again.session_ids()}


def test_leftovers_of_a_crashed_writer_are_removed_on_open(tmp_path: Path) -> None:
    populate(tmp_path, 1)
    keys = tmp_path / "keys"
    leftovers = [
        keys / ".sealed-keys.json.tmp-0123456789abcdef",
        keys / ".master.key.next.tmp-0123456789abcdef",
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"half-written")
    unrelated = keys / "notes.txt"
    unrelated.write_text("keep me")

    open_store(tmp_path).close()
    assert not any(leftover.exists() for leftover in leftovers)
    assert unrelated.exists()


# --- sandbox hand-off ----------------------------------------------------------------


def test_session_key_file_format_and_mode(tmp_path: Path) -> None:
    secret = bytes(range(64))
    path = tmp_path / "session.key"
    write_session_key_file(path, secret)

    assert path.read_text() == (f"inbound={secret[:32].hex()}\noutbound={secret[32:].hex()}\n")
    assert re.fullmatch(r"inbound=[0-9a-f]{64}\noutbound=[0-9a-f]{64}\n", path.read_text())
    assert mode_of(path) == 0o400


def test_session_key_file_is_replaced_whole_and_leaves_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "session.key"
    write_session_key_file(path, b"\x01" * 64)
    write_session_key_file(path, b"\x02" * 64, mode=0o440, group=os.getegid())

    assert path.read_text() == f"inbound={'02' * 32}\noutbound={'02' * 32}\n"
    assert mode_of(path) == 0o440
    assert path.stat().st_gid == os.getegid()
    assert [entry.name for entry in tmp_path.iterdir()] == ["session.key"]


@pytest.mark.parametrize(
    ("secret", "mode"),
    [(b"x" * 32, 0o400), (b"x" * 65, 0o400), (b"x" * 64, 0o600), (b"x" * 64, 0o444)],
)
def test_session_key_file_refuses_bad_secret_or_loose_mode(
    tmp_path: Path, secret: bytes, mode: int
) -> None:
    path = tmp_path / "session.key"
    with pytest.raises(ValueError):
        write_session_key_file(path, secret, mode=mode)
    assert not path.exists()
