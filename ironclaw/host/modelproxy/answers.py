"""What the proxy learns from a model's answer as it streams past: why the model
stopped, or what kind of failure the provider reported.

:class:`AnswerReader` is fed the response body chunk by chunk, beside the redactor, and
never changes it. It keeps a bounded copy of a JSON body (a completion or an error) and
reads an SSE stream line by line, looking only at the fields that carry a stop reason
(Anthropic's ``stop_reason``, OpenAI's ``finish_reason`` and ``refusal``) or an error
type. What it returns is a word from a closed vocabulary
(:mod:`ironclaw.contract.modelwire`), fit for a metric label and an audit entry: never
text from the answer.
"""

from __future__ import annotations

from typing import Any

import attrs

from ironclaw.contract.jsonvalue import JSONRejected, parse_json
from ironclaw.contract.modelwire import StopKind, classify_stop, parse_failure

__all__ = ["AnswerReader", "AnswerSummary"]

# A completion or error body larger than this is relayed but not read.
MAX_READ = 1024 * 1024


@attrs.frozen
class AnswerSummary:
    # A StopKind word for a model's answer; "" when the body was not a completion.
    stop: str = ""
    # A FailureKind word for an error answer (status >= 400); "" otherwise.
    failure: str = ""


def _stop_of_completion(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    stop = body.get("stop_reason")
    if isinstance(stop, str):
        return classify_stop(stop).value
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        for part in ("message", "delta"):
            message = choice.get(part)
            if isinstance(message, dict) and isinstance(message.get("refusal"), str) \
                    and message["refusal"]:
                return StopKind.REFUSED.value
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            return classify_stop(finish).value
    return ""


class AnswerReader:
    """Feed it what upstream sends; ``finish`` says what the answer was."""

    def __init__(self, status: int, content_type: str) -> None:
        self._status = status
        self._sse = content_type.split(";")[0].strip().lower() == "text/event-stream"
        self._buffer = bytearray()
        self._overflow = False
        self._stop = ""
        self._failure = ""

    def feed(self, chunk: bytes) -> None:
        if self._overflow:
            return
        self._buffer += chunk
        if self._sse:
            self._read_lines()
        if len(self._buffer) > MAX_READ:
            self._overflow = True
            self._buffer.clear()

    def _read_lines(self) -> None:
        *lines, rest = bytes(self._buffer).split(b"\n")
        self._buffer = bytearray(rest)
        for line in lines:
            if line.startswith(b"data:"):
                self._read_event(line[5:].strip())

    def _read_event(self, data: bytes) -> None:
        try:
            event = parse_json(data, max_bytes=MAX_READ)
        except JSONRejected:
            return  # "[DONE]", or not ours to judge
        if not isinstance(event, dict):
            return
        if event.get("type") == "error":
            self._failure = parse_failure(self._status, event).kind.value
            return
        delta = event.get("delta")
        body = delta if event.get("type") == "message_delta" and isinstance(delta, dict) \
            else event
        stop = _stop_of_completion(body)
        # The refusal or the final reason wins over "no reason yet".
        if stop and (not self._stop or stop == StopKind.REFUSED.value):
            self._stop = stop

    def finish(self) -> AnswerSummary:
        if self._sse:
            if self._buffer and not self._overflow:
                self._buffer += b"\n"
                self._read_lines()
            return AnswerSummary(self._stop, self._failure)
        body: Any = None
        if not self._overflow:
            try:
                body = parse_json(bytes(self._buffer), max_bytes=MAX_READ)
            except JSONRejected:
                body = None
        if self._status >= 400:
            return AnswerSummary("", parse_failure(self._status, body).kind.value)
        return AnswerSummary(_stop_of_completion(body) if not self._overflow
                             else StopKind.UNKNOWN.value, "")
