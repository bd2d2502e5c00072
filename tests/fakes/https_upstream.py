"""A real HTTPS server on loopback, for the egress broker to reach.

hypercorn (a real HTTP server) with TLS under a throwaway CA generated here with
``cryptography``; the certificate names ``upstream.example.com``, ``other.example.com``
and ``search.example.com``, so a broker that trusts the CA (``ca_bundle``) and pins
those names to 127.0.0.1 (``static_hosts``) talks to it exactly as it would to a public
site: SNI, certificate name check and all. It records every request and answers by path:

- ``/echo...``: JSON of what it received (method, path, query, headers, body);
- ``/bytes/<n>``: ``n`` bytes of ``a`` (``text/plain``);
- ``/gzip/<n>``: the same, gzip-compressed, with ``content-encoding: gzip``;
- ``/redirect?to=<url>&code=<3xx>``: a redirect to ``to``;
- ``/search?q=<query>``: a SearXNG-style JSON result list mentioning the query;
- ``/status/<code>``: that status, empty body;
- ``/hang``: never answers.
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import attrs
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["NAMES", "HttpsUpstream", "Recorded", "make_ca", "open_https_upstream"]

NAMES = ("upstream.example.com", "other.example.com", "search.example.com")


@attrs.frozen
class Recorded:
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]


@attrs.frozen
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(directory: Path, names: tuple[str, ...] = NAMES) -> Pki:
    """A CA and a leaf certificate for ``names`` (and 127.0.0.1), as PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder()
               .subject_name(_name("IronClaw test CA")).issuer_name(_name("IronClaw test CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_cert_sign=True, crl_sign=True,
                   content_commitment=False, key_encipherment=False, data_encipherment=False,
                   key_agreement=False, encipher_only=False, decipher_only=False),
                   critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (x509.CertificateBuilder()
            .subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    pki.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    pki.key_file.chmod(0o600)
    return pki


class HttpsUpstream:
    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.port = 0
        self.requests: list[Recorded] = []
        # The SNI name of every TLS handshake, in order.
        self.sni: list[str | None] = []

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_file

    def url(self, path: str, host: str = NAMES[0], scheme: str = "https") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        query = scope["query_string"].decode("latin-1")
        self.requests.append(Recorded(scope["method"], scope["path"], query, headers, body))
        await self._answer(scope, query, headers, body, send)

    async def _answer(self, scope: dict[str, Any], query: str,
                      headers: tuple[tuple[str, str], ...], body: bytes, send: Any) -> None:
        path: str = scope["path"]
        args = {k: v[0] for k, v in parse_qs(query).items()}
        if path.startswith("/echo"):
            payload = json.dumps({"method": scope["method"], "path": path, "query": query,
                                  "headers": [list(h) for h in headers],
                                  "body": body.decode("utf-8", "replace")}).encode()
            await _reply(send, 200, payload, [("content-type", "application/json")])
        elif path.startswith("/bytes/"):
            await _reply(send, 200, b"a" * int(path.rsplit("/", 1)[1]),
                         [("content-type", "text/plain; charset=utf-8")])
        elif path.startswith("/gzip/"):
            data = gzip.compress(b"a" * int(path.rsplit("/", 1)[1]))
            await _reply(send, 200, data, [("content-type", "text/plain"),
                                           ("content-encoding", "gzip")])
        elif path == "/redirect":
            await _reply(send, int(args.get("code", "302")), b"",
                         [("location", args.get("to", "/echo"))])
        elif path == "/search":
            q = args.get("q", "")
            results = [{"title": f"Result {i} for {q}", "url": f"https://r{i}.example.org/",
                        "content": f"snippet {i} about {q}"} for i in range(1, 8)]
            await _reply(send, 200, json.dumps({"query": q, "results": results}).encode(),
                         [("content-type", "application/json")])
        elif path.startswith("/status/"):
            await _reply(send, int(path.rsplit("/", 1)[1]), b"", [])
        elif path == "/hang":
            await trio.sleep_forever()
        else:
            await _reply(send, 404, b"no such path", [("content-type", "text/plain")])


async def _reply(send: Any, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in
                            [*headers, ("content-length", str(len(body)))]]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Config(Config):
    """hypercorn's TLS config, plus a note of each handshake's SNI name."""

    def __init__(self, upstream: HttpsUpstream) -> None:
        super().__init__()
        self._upstream = upstream

    def create_ssl_context(self) -> ssl.SSLContext | None:
        context = super().create_ssl_context()
        assert context is not None

        def note(_sock: object, name: str | None, _context: object) -> None:
            self._upstream.sni.append(name)

        context.sni_callback = note  # type: ignore[assignment]
        return context


@asynccontextmanager
async def open_https_upstream(directory: Path) -> AsyncIterator[HttpsUpstream]:
    """A running HTTPS server on 127.0.0.1 (ephemeral port)."""
    upstream = HttpsUpstream(make_ca(directory))
    config = _Config(upstream)
    config.bind = ["127.0.0.1:0"]
    config.certfile = str(upstream.pki.cert_file)
    config.keyfile = str(upstream.pki.key_file)
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, upstream, config)
        upstream.port = int(binds[0].rsplit(":", 1)[1])
        try:
            yield upstream
        finally:
            nursery.cancel_scope.cancel()
