"""The web console's files: self-contained (nothing fetched from elsewhere, no inline
script, no way to turn a string into markup), and docs/console.md lists exactly the
files served and the headers sent."""

from __future__ import annotations

import re
from pathlib import Path

from ironclaw.host.api.console import ASSET_NAMES, ASSETS, SECURITY_HEADERS

DOC = Path(__file__).resolve().parents[3] / "docs" / "console.md"
ASSET_DIR = Path(__file__).resolve().parents[3] / "ironclaw" / "host" / "api" / "console" / "assets"


def _source(name: str) -> str:
    return ASSETS[name][0].decode("utf-8")


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    html = _source("index.html")
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts, "the page loads its module"
    for attributes, body in scripts:
        assert 'src="' in attributes and not body.strip()
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert "style=" not in html and "<style" not in html


def test_everything_the_page_loads_is_served_and_nothing_comes_from_elsewhere() -> None:
    html = _source("index.html")
    referenced = set(re.findall(r'(?:src|href)="([^"#]+)"', html))
    for name in ASSET_NAMES:
        source = _source(name)
        assert "http://" not in source and "https://" not in source, name
        assert "//" + "cdn" not in source, name
        if name.endswith(".js"):
            referenced |= {m.removeprefix("./") for m in re.findall(
                r'from "(\./[^"]+)"', source)}
            assert not re.search(r'import\s*\(', source), name  # no dynamic import
    assert referenced | {"index.html"} == set(ASSET_NAMES)
    assert {p.name for p in ASSET_DIR.iterdir()} == set(ASSET_NAMES), \
        "every file in assets/ is served (and listed in ASSET_NAMES)"


def test_no_script_can_turn_a_string_into_markup() -> None:
    for name in ASSET_NAMES:
        if not name.endswith(".js"):
            continue
        source = _source(name)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function", "setAttribute(\"on", ".href", ".src"):
            assert sink not in source, (name, sink)


def test_the_doc_lists_the_files_and_the_headers() -> None:
    doc = DOC.read_text(encoding="utf-8")
    files = doc.split("## Files", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `([^`]+)` \|", files, re.M)) == set(ASSET_NAMES)
    block = doc.split("## Security", 1)[1].split("```", 2)[1].strip().splitlines()
    assert block == [f"{name}: {value}" for name, value in SECURITY_HEADERS.items()]
