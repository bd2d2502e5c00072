"""The webhook channel: signed JSON in over HTTP, signed JSON out over HTTP.

Inbound, the adapter serves ``POST /hooks/<instance or "default">`` itself (hypercorn and
a quart-trio app, on ``listen``, loopback by default). A request is answered, in order:

1. 404 for any other path or instance; 405 for another method;
2. 413 when the body exceeds ``max_body_bytes`` (declared or actual);
3. 401 when the signature headers are missing, stale or wrong (checked before the body
   is parsed: nothing unauthenticated is interpreted);
4. 400 when the body is not a JSON object of the documented shape;
5. 200 ``{"accepted": true, "duplicate": false}`` once the router has committed the
   event: the sender may treat a 200 as durable; a repeated ``id`` is answered 200 with
   ``"duplicate": true`` and not routed again;
6. 503 with ``Retry-After`` when the router did not commit within ``accept_timeout``
   (it is behind) or too many requests are in flight. The event may still be committed
   later; a retry with the same ``id`` then gets ``"duplicate": true``, never a second
   routing (the hand-over runs on in the adapter's own nursery, not in the request).
   Also 503 with ``Retry-After`` when the router refused the event because its
   session's inbound queue is full: nothing was committed, and a retry with the same
   ``id`` is routed afresh.

Outbound, each reply (split at ``max_text_chars``) is POSTed to ``url`` as
``{"id", "chat", "thread", "in_reply_to", "text"}`` (``in_reply_to``: the ``id`` of the
inbound event answered, null for a message of the agent's own), signed the same way
with ``outbound_secret``
(default: ``secret``), with ``Idempotency-Key`` set to the part's id. A 2xx answer is
success (its JSON ``message_id``, if any, is the platform message id); 429 and 5xx are
retried later (``Retry-After`` honoured); other statuses fail the delivery.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ironclaw.contract.jsonvalue import JSONRejected, parse_json
from ironclaw.host.channels.adapters import AdapterContext
from ironclaw.host.channels.base import (
    ChannelError,
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    InboundRefused,
    OutboundDelivery,
)
from ironclaw.host.channels.ledger import IdempotentDelivery
from ironclaw.host.channels.platform import Measure, deliver_in_parts, delivery_failure, split_text

from .config import WebhookConfig, split_listen
from .files import FilesRejected, file_part, parse_files
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

__all__ = ["WebhookAdapter", "WebhookListenFailed"]

logger = logging.getLogger(__name__)

CHANNEL = "webhook"
MAX_ID_CHARS = 200
MAX_RESPONSE_BYTES = 64 * 1024
RETRY_AFTER_S = 5
_WORDS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "timeout",
          413: "too_large"}


class _Config(Config):
    """Hypercorn's config, creating its one socket itself: hypercorn leaks the socket
    when ``bind`` fails, and a send timeout (``TCP_USER_TIMEOUT``) keeps a sender that
    stops reading from pinning a task, as on the API's listener."""

    stall_timeout_ms = 30_000

    def create_sockets(self) -> Sockets:
        host, port = split_listen(self.bind[0])
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            option = getattr(socket, "TCP_USER_TIMEOUT", None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, self.stall_timeout_ms)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return Sockets([], [sock], [])


class WebhookListenFailed(ChannelError):
    """The inbound endpoint could not be served (the address is taken, say)."""


@attrs.define
class _HandOver:
    """One event on its way to the router, shared by every request carrying its id."""

    done: trio.Event = attrs.field(factory=trio.Event)
    committed: bool = False  # the router has it (now or before): safe to answer 200
    routed: bool = False  # False: the id had been seen before (a duplicate)
    refused: str | None = None  # the router committed nothing: why (answer 503)


class _Rejected(Exception):
    def __init__(self, status: int, error: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.headers = headers or {}


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> Response:
    response = Response(json.dumps(body), status=status, content_type="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    response.headers["Cache-Control"] = "no-store"
    return response


class WebhookAdapter:
    def __init__(self, config: WebhookConfig, context: AdapterContext, instance: str = "",
                 *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._instance = instance
        self._state = context.state
        self._http = context.http
        self._idempotent = IdempotentDelivery(context.ledger)
        self._clock = clock
        self._in_flight: dict[str, _HandOver] = {}
        self.bound: list[str] = []  # the URLs hypercorn listens on, once serving

    carries_files = True

    @property
    def name(self) -> str:
        return CHANNEL

    @property
    def instance(self) -> str:
        return self._instance

    @property
    def hook_name(self) -> str:
        return self._instance or "default"

    # -- receiving -----------------------------------------------------------------------

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config = _Config()
        config.bind = [self.config.listen]
        config.accesslog = None
        config.errorlog = logging.getLogger("ironclaw.channels.webhook.hypercorn")
        config.include_server_header = False
        config.graceful_timeout = 1.0
        config.h11_max_incomplete_size = 16 * 1024
        try:
            async with trio.open_nursery() as nursery:
                app = self._app(events, nursery)
                self.bound = await nursery.start(functools.partial(
                    self._serve_http, app, config))
                logger.info("webhook/%s: listening on %s", self.hook_name,
                            ", ".join(self.bound))
                task_status.started()
        except BaseExceptionGroup as group:
            failed, _ = group.split(WebhookListenFailed)
            if failed is not None:
                raise failed.exceptions[0] from None
            raise
        finally:
            self.bound = []

    async def _serve_http(self, app: QuartTrio, config: Config, *,
                          task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await hypercorn_serve(app, config, shutdown_trigger=trio.sleep_forever,
                                  task_status=task_status)
        except (OSError, BaseExceptionGroup) as exc:
            if isinstance(exc, BaseExceptionGroup) and exc.split(OSError)[0] is None:
                raise
            raise WebhookListenFailed(f"cannot listen on {self.config.listen} "
                                      "(the address is taken or not ours)") from None

    def _app(self, events: trio.MemorySendChannel[InboundEvent],
             nursery: trio.Nursery) -> QuartTrio:
        app = QuartTrio(f"ironclaw.channels.webhook.{self.hook_name}")
        app.config.update(MAX_CONTENT_LENGTH=self.config.max_body_bytes,
                          PROVIDE_AUTOMATIC_OPTIONS=False)

        @app.route("/hooks/<name>", methods=["POST"])
        async def hook(name: str) -> Response:
            try:
                if name != self.hook_name:
                    raise _Rejected(404, "not_found", "no such hook")
                return await self._receive(events, nursery)
            except _Rejected as rejected:
                return _answer(rejected.status, {"error": rejected.error,
                                                 "detail": rejected.detail}, rejected.headers)

        @app.errorhandler(HTTPException)
        async def http_error(error: HTTPException) -> Response:
            status = error.code or 400
            detail = {404: "no such hook", 405: "POST only",
                      413: self._too_large}.get(status, "the request was refused")
            headers = {"Allow": "POST"} if status == 405 else None
            return _answer(status, {"error": _WORDS.get(status, "bad_request"),
                                    "detail": detail}, headers)

        @app.errorhandler(Exception)
        async def unexpected(error: Exception) -> Response:
            logger.error("webhook/%s: request failed (%s)", self.hook_name,
                         type(error).__name__)
            return _answer(500, {"error": "internal", "detail": "internal error"})

        return app

    @property
    def _too_large(self) -> str:
        return f"the body is limited to {self.config.max_body_bytes} bytes"

    async def _receive(self, events: trio.MemorySendChannel[InboundEvent],
                       nursery: trio.Nursery) -> Response:
        length = request.content_length
        if length is not None and length > self.config.max_body_bytes:
            raise _Rejected(413, "too_large", self._too_large)
        body = await request.get_data(cache=False, as_text=False, parse_form_data=False)
        assert isinstance(body, bytes)
        if len(body) > self.config.max_body_bytes:
            raise _Rejected(413, "too_large", self._too_large)
        problem = verify(self.config.secret.reveal().encode(),
                         request.headers.get(TIMESTAMP_HEADER),
                         request.headers.get(SIGNATURE_HEADER), body,
                         now=self._clock(), tolerance=self.config.timestamp_tolerance)
        if problem is not None:
            raise _Rejected(401, "unauthorized", problem)
        event_id, event = self._event(body)
        hand_over = self._in_flight.get(event_id)
        joined = hand_over is not None
        if hand_over is None:
            if len(self._in_flight) >= self.config.max_in_flight:
                raise _Rejected(503, "unavailable", "too many requests in flight",
                                {"Retry-After": str(RETRY_AFTER_S)})
            hand_over = self._in_flight[event_id] = _HandOver()
            nursery.start_soon(self._hand_over, events, event_id, event, hand_over)
        with trio.move_on_after(self.config.accept_timeout):
            await hand_over.done.wait()
        if hand_over.refused is not None:
            raise _Rejected(503, "unavailable", hand_over.refused,
                            {"Retry-After": str(RETRY_AFTER_S)})
        if not hand_over.committed:
            raise _Rejected(503, "unavailable", "the event was not committed in time; "
                            "retry with the same id", {"Retry-After": str(RETRY_AFTER_S)})
        return _answer(200, {"accepted": True, "duplicate": joined or not hand_over.routed})

    async def _hand_over(self, events: trio.MemorySendChannel[InboundEvent], event_id: str,
                         event: InboundEvent, hand_over: _HandOver) -> None:
        try:
            hand_over.routed = await self._state.hand_over(events, event, event_id=event_id,
                                                           raise_refused=True)
            hand_over.committed = True
        except InboundRefused as refused:
            hand_over.refused = str(refused)  # nothing committed: the sender retries
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the router is gone: we are stopping, the sender will retry
        finally:
            del self._in_flight[event_id]
            hand_over.done.set()

    def _event(self, body: bytes) -> tuple[str, InboundEvent]:
        try:
            value = parse_json(body, max_bytes=self.config.max_body_bytes)
        except JSONRejected:
            raise _Rejected(400, "bad_request", "the body is not strict JSON") from None
        if not isinstance(value, dict):
            raise _Rejected(400, "bad_request", "the body must be a JSON object")
        for item in value.values():
            if isinstance(item, str) and not _encodable(item):  # "\ud800" is legal JSON
                raise _Rejected(400, "bad_request", "strings must be valid Unicode")
        event_id = _string(value, "id")
        chat = _string(value, "chat")
        sender = _string(value, "sender")
        text = value.get("text")
        if not isinstance(text, str):  # its size is bounded by max_body_bytes
            raise _Rejected(400, "bad_request", "text must be a string")
        thread = value.get("thread")
        if thread is not None:
            thread = _string(value, "thread")
        name = value.get("sender_name")
        if name is not None:
            name = _string(value, "sender_name")
        mentioned, direct = value.get("mentioned", False), value.get("direct", False)
        if not isinstance(mentioned, bool) or not isinstance(direct, bool):
            raise _Rejected(400, "bad_request", "mentioned and direct must be true or false")
        try:
            files = parse_files(value.get("files"))
        except FilesRejected as exc:
            raise _Rejected(400, "bad_request", str(exc)) from None
        return event_id, InboundEvent(
            channel=CHANNEL, instance=self._instance, platform_id=chat, sender_handle=sender,
            text=text, thread_id=thread, mentioned=mentioned, direct=direct,
            platform_message_id=event_id, sender_display_name=name, attachments=files)

    # -- delivering ----------------------------------------------------------------------

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        if self.config.url is None:
            raise DeliveryFailed("no url is configured for replies", retryable=False)
        if delivery.file is not None:  # one request: the caption and the file
            return await self._idempotent.deliver(delivery, self._post)
        parts = split_text(delivery.text, self.config.max_text_chars, Measure.CHARS)
        return await deliver_in_parts(self._idempotent, delivery, parts, self._post)

    async def _post(self, part: OutboundDelivery) -> str:
        assert self.config.url is not None
        fields: dict[str, Any] = {"id": part.outbound_id, "chat": part.platform_id,
                                  "thread": part.thread_id, "in_reply_to": part.in_reply_to,
                                  "text": part.text}
        if part.file is not None:
            fields["file"] = file_part(part.file)
        body = json.dumps(fields).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": part.outbound_id,
                   **sign(self.config.outbound_secret.reveal().encode(), body, self._clock())}
        try:
            async with self._http.stream("POST", self.config.url, content=body,
                                         headers=headers,
                                         timeout=self.config.request_timeout) as response:
                content = await _read_capped(response, MAX_RESPONSE_BYTES)
        except httpx.HTTPError as exc:
            # Never the exception's text: it names the URL, which may hold a token.
            raise DeliveryFailed(f"webhook: {type(exc).__name__}", retryable=True) from None
        # Only what the failure mapping reads (the body is already decoded).
        kept = {key: value for key, value in response.headers.items()
                if key.lower() in ("retry-after", "content-type")}
        answered = httpx.Response(response.status_code, headers=kept, content=content)
        failure = delivery_failure(answered, "webhook")
        if failure is not None:
            raise failure
        return _message_id(content) or f"webhook-{part.outbound_id}"


def _string(value: dict[str, Any], key: str) -> str:
    item = value.get(key)
    if not isinstance(item, str) or not item or len(item) > MAX_ID_CHARS:
        raise _Rejected(400, "bad_request",
                        f"{key} must be a non-empty string of at most {MAX_ID_CHARS} characters")
    return item


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    content = bytearray()
    async for chunk in response.aiter_bytes():
        content += chunk
        if len(content) > limit:
            return bytes(content[:limit])
    return bytes(content)


def _message_id(content: bytes) -> str | None:
    try:
        value = json.loads(content) if content else None
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict):
        message_id = value.get("message_id")
        if isinstance(message_id, str | int) and not isinstance(message_id, bool):
            text = str(message_id)
            return text[:MAX_ID_CHARS] if text else None
    return None
