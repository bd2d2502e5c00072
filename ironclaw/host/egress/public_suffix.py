"""Whether an egress wildcard stays inside one registrant's names.

``*.example.org`` hands an agent every name under example.org: fine, one owner holds
them all. ``*.co.uk``, ``*.github.io`` or ``*.amazonaws.com`` hand it every name that
thousands of strangers registered under a public suffix (``github.io`` pages,
``s3.amazonaws.com`` buckets), which is an open door, not a grant. The Public Suffix
List, as the ``publicsuffixlist`` package ships it (kept current by its releases),
says where registrants begin. A wildcard is refused when its base is a public suffix,
or when any public suffix lies beneath it.

The gateway's egress verifier refuses such a wildcard, and the egress broker ignores
one that is already stored in a grant, so both sides hold the same rule.
"""

from __future__ import annotations

import functools

from publicsuffixlist import PSLFILE, PublicSuffixList

__all__ = ["wildcard_problem"]


@functools.cache
def _list() -> PublicSuffixList:
    return PublicSuffixList()


@functools.cache
def _above_a_public_suffix() -> frozenset[str]:
    """Every name that has a public suffix strictly beneath it (``amazonaws.com``, for
    ``s3.amazonaws.com``), read from the list the package ships."""
    above: set[str] = set()
    with open(PSLFILE, encoding="utf-8") as listing:
        for line in listing:
            rule = line.strip().split(" ")[0].lower()
            if not rule or rule.startswith(("//", "!")):
                continue  # exceptions ("!") make a name private, never public
            rule = rule.removeprefix("*.")
            try:
                rule = rule.encode("idna").decode("ascii")
            except UnicodeError:
                continue  # a rule Python's IDNA codec cannot encode names no ASCII host
            labels = rule.split(".")
            above.update(".".join(labels[i:]) for i in range(1, len(labels)))
    return frozenset(above)


def wildcard_problem(base: str) -> str | None:
    """Why ``*.<base>`` spans more than one registrant (None when it does not).
    ``base`` is a lowercase ASCII host name without the ``*.``."""
    if _list().is_public(base):
        return f"'*.{base:.80}' covers a public suffix: anyone can register names under it"
    if base in _above_a_public_suffix():
        return (f"'*.{base:.80}' covers public suffixes beneath it (names that other "
                "people register)")
    return None
