"""Files into a workspace and out of it: names, types, caps, quota, and a hostile agent
that plants links where the host is about to write or read."""

from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironclaw.contract.actions import SendFile, parse_system_action, render_system_action
from ironclaw.host.attachments import (
    AttachmentInbox,
    AttachmentPolicy,
    AttachmentRefused,
    InboundAttachment,
    OutboundFile,
    bytes_source,
    platform_attachment,
)
from ironclaw.host.attachments.names import MAX_NAME_BYTES, safe_name
from ironclaw.host.attachments.outbox import read_workspace_file
from ironclaw.host.channels.base import OutboundDelivery
from ironclaw.host.channels.files import without_file
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.file import ConfigFileError, load_config_file

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + b"\x00" * 64
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 64
SESSION = "ses_0123456789abcdef"


def attachment(name: str, data: bytes) -> InboundAttachment:
    return InboundAttachment(name, None, source=bytes_source(data))


def inbox_for(workspace: Path, **policy: object) -> AttachmentInbox:
    async def workspace_of(_group: str) -> Path:
        return workspace

    return AttachmentInbox(workspace_of, AttachmentPolicy(**policy))  # type: ignore[arg-type]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# -- names ------------------------------------------------------------------------------

@pytest.mark.parametrize(("declared", "media_type", "expected"), [
    ("../../etc/passwd", "text/plain", "passwd.txt"),
    ("..\\..\\boot.ini", "text/plain", "boot.ini.txt"),
    ("a\x00b.txt", "text/plain", "ab.txt"),
    ("invoice\u202etxt.exe", "application/pdf", "invoicetxt.exe.pdf"),
    ("...hidden.png", "image/png", "hidden.png"),
    ("-rf.txt", "text/plain", "rf.txt"),
    ("photo.exe", "image/png", "photo.exe.png"),
    ("", "image/png", "file.png"),
    ("notes.md", "text/plain", "notes.md"),
])
def test_names_are_made_safe(declared: str, media_type: str, expected: str) -> None:
    assert safe_name(declared, media_type) == expected


@given(st.text(max_size=400), st.sampled_from(["text/plain", "image/png", None]))
def test_no_name_escapes_its_folder_or_hides_or_misleads(declared: str,
                                                       media_type: str | None) -> None:
    name = safe_name(declared, media_type)
    assert name and "/" not in name and "\x00" not in name
    assert not name.startswith((".", "-")) and name not in (".", "..")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in name)


# -- inbound ----------------------------------------------------------------------------

async def test_a_file_lands_in_the_inbox_readable_and_never_executable(tmp_path: Path) -> None:
    block = await inbox_for(tmp_path).receive(SESSION, "ag", "in_abc", [
        attachment("../cat.png", PNG), attachment("notes.txt", b"hello\n"),
        attachment("notes.txt", b"again\n")])
    folder = tmp_path / "inbox" / SESSION / "in_abc"
    assert [p.name for p in files_under(tmp_path)] == ["cat.png", "notes (2).txt",
                                                        "notes.txt"]
    assert (folder / "notes (2).txt").read_bytes() == b"again\n"
    for path in files_under(tmp_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert block.splitlines() == [
        "[attachments]",
        f"- inbox/{SESSION}/in_abc/cat.png (image/png, {len(PNG)} bytes)",
        f"- inbox/{SESSION}/in_abc/notes.txt (text/plain, 6 bytes)",
        f"- inbox/{SESSION}/in_abc/notes (2).txt (text/plain, 6 bytes)"]


async def test_types_are_sniffed_and_a_disguise_is_refused(tmp_path: Path) -> None:
    block = await inbox_for(tmp_path).receive(SESSION, "ag", "in_1", [
        attachment("cat.png", ELF),  # an executable named as a picture
        attachment("notes.txt", b"plain text, then \x00\x01 binary"),
        attachment("long.txt", b"a" * 70_000 + b"\x00tail")])  # text head, binary tail
    assert files_under(tmp_path) == []
    assert block.count("refused") == 3
    assert 'refused "cat.png": its type (application/x-executable) is not allowed' in block


async def test_an_oversize_file_is_cut_off_and_leaves_nothing(tmp_path: Path) -> None:
    block = await inbox_for(tmp_path, max_file_bytes=100_000).receive(
        SESSION, "ag", "in_1", [attachment("big.txt", b"x" * 100_001),
                                attachment("fits.txt", b"x" * 100_000)])
    assert [p.name for p in files_under(tmp_path)] == ["fits.txt"]
    assert "larger than the cap of 100000 bytes" in block


async def test_the_session_quota_counts_what_is_in_its_inbox(tmp_path: Path) -> None:
    inbox = inbox_for(tmp_path, session_quota_bytes=150_000)
    await inbox.receive(SESSION, "ag", "in_1", [attachment("a.txt", b"a" * 100_000)])
    block = await inbox.receive(SESSION, "ag", "in_2", [attachment("b.txt", b"b" * 60_000)])
    assert "exceed the session's file quota" in block
    other = await inbox.receive("ses_fedcba9876543210", "ag", "in_2",
                                [attachment("b.txt", b"b" * 60_000)])
    assert "refused" not in other  # the quota is per session
    (tmp_path / "inbox" / SESSION / "in_1" / "a.txt").unlink()  # the agent frees room
    again = await inbox.receive(SESSION, "ag", "in_3", [attachment("b.txt", b"b" * 60_000)])
    assert "refused" not in again


async def test_the_quota_scan_is_capped_at_every_level(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries the agent plants beside the message folders count against the cap too:
    else one scan walks them all while holding the inbox's shared worker limiter."""
    from ironclaw.host.attachments import inbox as inbox_module
    monkeypatch.setattr(inbox_module, "_MAX_QUOTA_ENTRIES", 10)
    session_dir = tmp_path / "inbox" / SESSION
    session_dir.mkdir(parents=True)
    for n in range(6):
        (session_dir / f"planted-{n}").write_bytes(b"")
        (session_dir / f"empty-{n}").mkdir()
    block = await inbox_for(tmp_path).receive(SESSION, "ag", "in_1",
                                              [attachment("a.txt", b"hi")])
    assert "too many files" in block


async def test_a_link_planted_at_inbox_is_never_written_through(tmp_path: Path) -> None:
    workspace, elsewhere = tmp_path / "workspace", tmp_path / "host-private"
    workspace.mkdir()
    elsewhere.mkdir()
    (workspace / "inbox").symlink_to(elsewhere)
    block = await inbox_for(workspace).receive(SESSION, "ag", "in_1",
                                               [attachment("a.txt", b"hi")])
    assert list(elsewhere.iterdir()) == []
    assert "the workspace's inbox is not usable" in block
    # One level down too: the message's folder swapped for a link.
    (workspace / "inbox").unlink()
    (workspace / "inbox" / SESSION).mkdir(parents=True)
    (workspace / "inbox" / SESSION / "in_2").symlink_to(elsewhere)
    block = await inbox_for(workspace).receive(SESSION, "ag", "in_2",
                                               [attachment("a.txt", b"hi")])
    assert list(elsewhere.iterdir()) == [] and "not usable" in block


async def test_a_name_taken_by_a_planted_link_is_numbered_around(tmp_path: Path) -> None:
    folder = tmp_path / "inbox" / SESSION / "in_1"
    folder.mkdir(parents=True)
    target = tmp_path / "target"
    (folder / "a.txt").symlink_to(target)
    await inbox_for(tmp_path).receive(SESSION, "ag", "in_1", [attachment("a.txt", b"hi")])
    assert not target.exists()
    assert (folder / "a (2).txt").read_bytes() == b"hi"


async def test_too_many_files_in_one_message(tmp_path: Path) -> None:
    block = await inbox_for(tmp_path, max_files_per_message=2).receive(
        SESSION, "ag", "in_1", [attachment(f"{n}.txt", b"x") for n in range(5)])
    assert len(files_under(tmp_path)) == 2
    assert "3 more file(s) not taken" in block


def test_an_attachment_url_off_the_platform_is_refused_before_any_request() -> None:
    origins = [("https", "api.telegram.org", 443)]
    for url in ("https://169.254.169.254/latest/meta-data", "http://api.telegram.org/f",
                "https://api.telegram.org:8443/f", "https://user@api.telegram.org/f",
                "file:///etc/passwd", "https://api.telegram.org.evil.example/f"):
        found = platform_attachment(None, url, declared_name="x",  # type: ignore[arg-type]
                                    declared_type=None, origins=origins)
        assert found.source is None and found.refused == "its URL points outside the platform"
    good = platform_attachment(None, "https://API.telegram.org/file/x",  # type: ignore[arg-type]
                               declared_name="x", declared_type=None, origins=origins)
    assert good.source is not None


# -- outbound ---------------------------------------------------------------------------

def test_a_workspace_file_is_read_with_its_sniffed_type(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "chart.dat").write_bytes(PNG)
    file = read_workspace_file(tmp_path, "out/chart.dat", policy=AttachmentPolicy())
    assert (file.name, file.media_type, file.data) == ("chart.dat.png", "image/png", PNG)


@pytest.mark.parametrize("planted", ["symlink", "hardlink", "fifo", "dir-link", "elf",
                                     "dotdot", "large"])
def test_a_file_to_send_is_refused_unless_plain_and_allowed(tmp_path: Path,
                                                           planted: str) -> None:
    workspace, secret = tmp_path / "workspace", tmp_path / "secret.txt"
    workspace.mkdir()
    secret.write_text("host-private")
    path = "f.txt"
    if planted == "symlink":
        (workspace / path).symlink_to(secret)
    elif planted == "hardlink":
        os.link(secret, workspace / path)
    elif planted == "fifo":
        os.mkfifo(workspace / path)
    elif planted == "dir-link":
        (workspace / "d").symlink_to(tmp_path)
        path = "d/secret.txt"
    elif planted == "elf":
        (workspace / path).write_bytes(ELF)
    elif planted == "dotdot":
        path = "../secret.txt"
    else:
        (workspace / path).write_bytes(b"x" * 2000)
    with pytest.raises(AttachmentRefused):
        read_workspace_file(workspace, path, policy=AttachmentPolicy(max_file_bytes=1000))


def test_send_file_round_trips_through_the_contract() -> None:
    action = SendFile(path="out/report.pdf", caption="the report")
    assert parse_system_action(render_system_action(action)) == action
    assert parse_system_action('{"action":"send_file"}').__class__.__name__ == (
        "MalformedAction")


def test_the_config_table_is_checked() -> None:
    policy = AttachmentPolicy.from_table({"max_file_bytes": 1000,
                                          "allowed_types": ["Image/PNG"]})
    assert policy.max_file_bytes == 1000 and policy.allowed_types == {"image/png"}
    for bad in ({"max_file_bytes": "1"}, {"nope": 1}, {"allowed_types": ["png"]},
                {"max_files_per_message": 0}):
        with pytest.raises(ValueError):
            AttachmentPolicy.from_table(bad)


def test_a_channel_that_carries_no_files_gets_a_notice_instead() -> None:
    file = OutboundFile("report.pdf", "application/pdf", b"%PDF-1.4")
    delivery = OutboundDelivery("k", "irc", "", "#ops", None, "the report", file)

    class Plain:
        pass

    class Uploads:
        carries_files = True

    notice = without_file(delivery, Plain())
    assert notice.file is None and notice.text == (
        "the report\n\n[file report.pdf (application/pdf, 8 bytes): this channel cannot "
        "carry files]")
    assert without_file(delivery, Uploads()) is delivery


def test_the_config_file_carries_the_attachments_table(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('state_dir = "/var/lib/ironclaw"\n[attachments]\n'
                      'max_file_bytes = 4096\nallowed_types = ["image/png"]\n')
    loaded = load_config_file(config)
    plane = ControlPlaneConfig(**loaded)
    assert plane.attachments == AttachmentPolicy(max_file_bytes=4096,
                                                 allowed_types=frozenset({"image/png"}))
    config.write_text('[attachments]\nmax_file_bytes = "big"\n')
    with pytest.raises(ConfigFileError, match="max_file_bytes"):
        load_config_file(config)
