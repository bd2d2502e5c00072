"""Matrix files, both ways, against a real Synapse: an ``m.file`` in is fetched through
the homeserver's authenticated media endpoint, and ``send_file`` uploads to the media
repository and posts an ``m.image`` event people can download."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from urllib.parse import quote

import trio

from tests.support.channels import ChatWiring, open_channel_plane
from tests.support.files import PNG, enable_file_tools, stored_path, workspace_file
from tests.support.matrix_person import Person

from .test_matrix_synapse import Cast, pytestmark
from .test_matrix_synapse import cast as cast
from .test_matrix_synapse import synapse as synapse

__all__ = ["pytestmark"]


async def share(person: Person, room_id: str, name: str, media_type: str,
                data: bytes) -> str:
    headers = {"Authorization": f"Bearer {person.account.token}",
               "Content-Type": media_type}
    answer = await person.http.post("/_matrix/media/v3/upload", content=data,
                                    params={"filename": name}, headers=headers)
    answer.raise_for_status()
    content = {"msgtype": "m.file", "body": name, "url": answer.json()["content_uri"],
               "info": {"mimetype": media_type, "size": len(data)}}
    txn = secrets.token_hex(8)
    sent = await person.call(
        "PUT", f"/rooms/{quote(room_id, safe='')}/send/m.room.message/{txn}", content)
    return str(sent["event_id"])


async def download(person: Person, uri: str) -> bytes:
    server, media_id = uri[len("mxc://"):].split("/", 1)
    answer = await person.http.get(
        f"/_matrix/client/v1/media/download/{server}/{media_id}",
        headers={"Authorization": f"Bearer {person.account.token}"})
    answer.raise_for_status()
    return answer.content


async def test_a_file_in_and_an_image_back(cast: Cast, tmp_path: Path) -> None:
    dm = await cast.room(direct=True)
    with trio.fail_after(90):
        async with open_channel_plane(tmp_path, [cast.settings()],
                                      [ChatWiring("matrix", dm)]) as plane:
            await enable_file_tools(plane)
            await cast.alice.say(dm, "hello")
            await cast.replies(dm, 1)
            await share(cast.alice, dm, "notes.txt", "application/pdf", b"plain notes\n")
            bodies = await cast.replies(dm, 2)
            path = stored_path(bodies[1], "text/plain", 12)
            assert (await workspace_file(plane, path)).read_bytes() == b"plain notes\n"

            (await workspace_file(plane, path)).parent.joinpath("pic").write_bytes(PNG)
            picture = str(Path(path).parent / "pic")
            await cast.alice.say(dm, "tool:send_file " + json.dumps(
                {"path": picture, "caption": "a picture"}))
            await cast.replies(dm, 4)
            events = await cast.alice.events_from(dm, cast.bot.user_id)
            images = [e["content"] for e in events if e["content"]["msgtype"] == "m.image"]
            assert len(images) == 1
            assert (images[0]["body"], images[0]["filename"], images[0]["info"]) == (
                "a picture", "pic.png", {"mimetype": "image/png", "size": len(PNG)})
            assert await download(cast.alice, images[0]["url"]) == PNG
