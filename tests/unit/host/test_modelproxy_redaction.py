"""The redactor never changes innocent text and never lets a key through.

Ordinary prose and code (the standard library's sources, our docs, hyphenated file
names, paths, base64, UUIDs, JSON-escaped copies) must come out byte for byte; keys in
every provider's real format, in every context a response puts them, must not. The
credentials the host holds are caught raw, JSON-escaped and split across chunks.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.textcorpus import HYPHENATED, KEY_CONTEXTS, ordinary_corpus, real_format_keys
from ironclaw.host.modelproxy.credentials import Secret
from ironclaw.host.modelproxy.redact import Redactor

HELD = "hk/live+odd\"chars\\ok-0123456789"  # a held credential no shape would catch


def stream_through(redactor: Redactor, pieces: list[bytes]) -> tuple[bytes, int]:
    scrubber = redactor.stream()
    out = b"".join(scrubber.feed(piece) for piece in pieces) + scrubber.finish()
    return out, scrubber.count


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor([Secret(HELD)])


def test_the_words_that_were_corrupted_pass_untouched(redactor: Redactor) -> None:
    for word in HYPHENATED:
        text = f'write_file {{"path": "{word}"}} then {word}.'.encode()
        assert redactor.redact(text) == (text, 0), word


def test_no_false_positive_on_the_ordinary_corpus(redactor: Redactor) -> None:
    corpus = ordinary_corpus()
    assert sum(map(len, corpus)) > 1_000_000  # really a corpus
    flagged = [doc[:80] for doc in corpus if redactor.redact(doc.encode())[1]]
    assert flagged == []


def test_no_false_positive_when_the_corpus_streams_in_small_chunks(
        redactor: Redactor) -> None:
    text = "\n".join(ordinary_corpus(stdlib_bytes=200_000, generated=300)).encode()
    pieces = [text[i:i + 61] for i in range(0, len(text), 61)]
    assert stream_through(redactor, pieces) == (text, 0)


def test_no_miss_on_real_format_keys_in_any_context(redactor: Redactor) -> None:
    missed = []
    for key in real_format_keys():
        for context in KEY_CONTEXTS:
            text = context.format(key=key).encode()
            out, count = redactor.redact(text)
            if count != 1 or key[8:40].encode() in out:
                missed.append(text[:60])
    assert missed == []


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, 349), context=st.sampled_from(KEY_CONTEXTS),
       cuts=st.lists(st.integers(0, 400), max_size=6))
def test_keys_split_across_chunks_are_caught(redactor: Redactor, index: int,
                                             context: str, cuts: list[int]) -> None:
    key = real_format_keys()[index % len(real_format_keys())]
    text = context.format(key=key).encode()
    points = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    out, count = stream_through(redactor, [text[a:b] for a, b in itertools.pairwise(points)])
    assert (out, count) == redactor.redact(text)
    assert count == 1


def test_held_credential_raw_and_json_escaped_at_every_split(redactor: Redactor) -> None:
    escaped = json.dumps({"echo": HELD}).encode()
    for text in (f"x {HELD} y".encode(), escaped, escaped.replace(b"/", b"\\/")):
        for i in range(len(text) + 1):
            out, count = stream_through(redactor, [text[:i], text[i:]])
            assert count == 1 and b"0123456789" not in out, (text, i)
