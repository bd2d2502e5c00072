"""Text the model proxy's redactor must leave alone, and keys it must never let through.

:func:`ordinary_corpus` is real prose and code (this machine's Python standard library
sources and this repository's docs) plus generated text with the shapes that fooled the
old redactor: hyphenated words and file names, paths, base64 (plain and URL-safe),
UUIDs, and all of it again JSON-escaped. :func:`real_format_keys` mints keys in the
formats providers issue. Both are deterministic for a seed, so a failure reproduces.
The redaction tests assert 0 false positives and 0 misses on them; ``python -m bench
models`` reports the redactor's throughput on the same corpus.
"""

from __future__ import annotations

import base64
import json
import random
import string
import sysconfig
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["HYPHENATED", "KEY_CONTEXTS", "ordinary_corpus", "real_format_keys"]

REPO = Path(__file__).resolve().parent.parent
URLSAFE = string.ascii_letters + string.digits + "-_"
ALNUM = string.ascii_letters + string.digits

# Words and names with "sk-" inside or at the start, the way people write them.
HYPHENATED = (
    "task-runner-configuration.yaml", "disk-partitioning-utility", "risk-assessment-"
    "framework-document", "desk-reference-for-operators-2024", "mask-generation-pipeline-"
    "v2", "sk-learn-compatible-estimators", "ask-me-anything-thread-archive", "whisk-"
    "together-the-dry-ingredients", "/var/lib/task-scheduler-service/state.json",
    "flask-sqlalchemy-extension-loader", "kiosk-mode-display-controller-settings",
    "asterisk-dialplan-configuration-reference", "sk-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef",
    "basket-of-goods-price-index-2019-2024", "tusk-and-bone-collection-catalogue",
)


def _stdlib_sources(limit_bytes: int) -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        yield text
        total += len(text)
        if total >= limit_bytes:
            return


def _docs() -> Iterator[str]:
    for path in sorted((REPO / "docs").rglob("*.md")):
        yield path.read_text("utf-8")


def _generated(rng: random.Random, count: int) -> Iterator[str]:
    for _ in range(count):
        raw = rng.randbytes(rng.randint(16, 96))
        yield base64.b64encode(raw).decode()
        yield base64.urlsafe_b64encode(raw).decode().rstrip("=")
        yield str(uuid.UUID(int=rng.getrandbits(128)))
        parts = [rng.choice(HYPHENATED).split(".")[0] for _ in range(3)]
        yield "/srv/" + "/".join(parts) + f"/{rng.randint(0, 999)}.log"
    yield from HYPHENATED


def ordinary_corpus(*, seed: int = 21, stdlib_bytes: int = 2_000_000,
                    generated: int = 2000) -> list[str]:
    """Documents with no credential in them."""
    rng = random.Random(seed)
    docs = [*_stdlib_sources(stdlib_bytes), *_docs(), "\n".join(_generated(rng, generated))]
    # The same text as a model's JSON answer carries it.
    docs += [json.dumps({"text": doc}) for doc in docs[-8:]]
    return docs


def _pick(rng: random.Random, alphabet: str, size: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def real_format_keys(*, seed: int = 21, per_format: int = 50) -> list[str]:
    """Keys in the formats the providers issue (random, never real)."""
    rng = random.Random(seed)
    keys: list[str] = []
    for _ in range(per_format):
        keys += [
            "sk-ant-api03-" + _pick(rng, URLSAFE, 93) + "AA",
            "sk-ant-admin01-" + _pick(rng, URLSAFE, 93) + "AA",
            "sk-" + _pick(rng, ALNUM, 20) + "T3BlbkFJ" + _pick(rng, ALNUM, 20),
            "sk-proj-" + _pick(rng, URLSAFE, 156),
            "sk-svcacct-" + _pick(rng, URLSAFE, 156),
            "sk-admin-" + _pick(rng, URLSAFE, 120),
            "sk-or-v1-" + _pick(rng, "0123456789abcdef", 64),
        ]
    return keys


# Where a leaked key sits in a response: each has one "{key}" to fill in.
KEY_CONTEXTS = (
    "{key}", "your key is {key}.", "Authorization: Bearer {key}\r\n",
    '{{"error": {{"message": "Incorrect API key provided: {key}"}}}}',
    '{{"text": "line one\\n{key}\\tafter"}}', "OPENAI_API_KEY={key}\n", "key:'{key}'",
    'data: {{"delta": {{"text": "({key})"}}}}\n\n',
)
