"""XMPP files, both ways, against a real Prosody with its HTTP File Upload component
(``mod_http_file_share``): a person uploads a file and shares its link (XEP-0066), the
agent gets the file from the configured file host only; ``send_file`` takes a slot
(XEP-0363), PUTs the bytes, and sends the link."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import httpx
import trio

from tests.fakes.prosody import UPLOAD_DOMAIN, Prosody
from tests.fakes.xmpp_client import XmppPerson, open_xmpp_person
from tests.support.channels import ChatWiring, open_channel_plane
from tests.support.files import PNG, enable_file_tools, stored_path, workspace_file

from .test_xmpp import Cast, from_bot, pytestmark, wait_up
from .test_xmpp import cast as cast
from .test_xmpp import prosody as prosody

__all__ = ["pytestmark"]
UPLOAD = "urn:xmpp:http:upload:0"


async def upload(person: XmppPerson, name: str, data: bytes, media_type: str) -> str:
    """Through the server's upload service, as a client does: the file's get URL."""
    iq = (f"<iq type='get' id='up-{name}' to='{UPLOAD_DOMAIN}'><request xmlns='{UPLOAD}' "
          f"filename={quoteattr(name)} size='{len(data)}' "
          f"content-type={quoteattr(media_type)}/></iq>")
    slot = (await person.query(iq, f"up-{name}")).find(f"{{{UPLOAD}}}slot")
    assert slot is not None
    put, get = slot.find(f"{{{UPLOAD}}}put"), slot.find(f"{{{UPLOAD}}}get")
    assert put is not None and get is not None
    headers = {h.get("name", ""): h.text or "" for h in put.findall(f"{{{UPLOAD}}}header")}
    async with httpx.AsyncClient() as http:
        (await http.put(str(put.get("url")), content=data,
                        headers={"Content-Type": media_type, **headers})).raise_for_status()
    return str(get.get("url"))


async def test_a_shared_file_in_and_an_uploaded_file_out(cast: Cast, prosody: Prosody,
                                                         tmp_path: Path) -> None:
    host = f"http://127.0.0.1:{prosody.http_port}"
    settings = cast.settings(upload_service=UPLOAD_DOMAIN, file_hosts=[host])
    with trio.fail_after(60):
        async with open_xmpp_person(prosody.port, cast.alice, cast.alice_password
                                    ) as alice, \
                open_channel_plane(tmp_path, [settings],
                                   [ChatWiring("xmpp", cast.alice)]) as plane:
            await enable_file_tools(plane)
            await wait_up(plane)
            url = await upload(alice, "notes.txt", b"xmpp notes\n", "text/plain")
            await alice.share(cast.bot, url)
            (reply,) = await alice.wait_for(from_bot(cast))
            assert reply.body is not None
            path = stored_path(reply.body, "text/plain", 11)
            assert (await workspace_file(plane, path)).read_bytes() == b"xmpp notes\n"

            # A link anywhere but the configured file host is refused unfetched.
            await alice.share(cast.bot, "http://127.0.0.1:9/private")
            await alice.wait_for(from_bot(cast), count=2)
            assert "its URL points outside the platform" in str(alice.received[-1].body)

            (await workspace_file(plane, path)).parent.joinpath("p.png").write_bytes(PNG)
            await alice.say(cast.bot, "tool:send_file " + json.dumps(
                {"path": str(Path(path).parent / "p.png"), "caption": "yours"}))
            (link,) = await alice.wait_for(
                lambda m: from_bot(cast)(m) and str(m.body).startswith(host))
            get_url, caption = str(link.body).split("\n")
            assert caption == "yours"
            async with httpx.AsyncClient() as http:
                assert (await http.get(get_url)).content == PNG
