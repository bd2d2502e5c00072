"""The ELF reader the image builder trusts to find the libraries a binary needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ironclaw.host.isolation.elf import ElfError, is_elf, read_elf


def host_binary() -> Path:
    found = shutil.which("true") or "/bin/true"
    return Path(found).resolve()


def test_needed_libraries_and_interpreter_match_the_loaders_own_view() -> None:
    binary = host_binary()
    info = read_elf(binary)
    # ldd (the loader itself) is the reference for the dynamic dependencies.
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    from_ldd = {line.split()[0] for line in ldd.stdout.splitlines() if "=>" in line}
    assert set(info.needed) == from_ldd
    assert info.interpreter is not None and Path(info.interpreter).exists()
    assert info.elf_class == (2 if sys.maxsize > 2**32 else 1)


def test_a_shared_library_names_itself() -> None:
    libc = next(p for p in (Path("/lib/x86_64-linux-gnu/libc.so.6"),
                            Path("/lib64/libc.so.6"), Path("/usr/lib/libc.so.6"))
                if p.exists())
    info = read_elf(libc)
    assert info.soname == "libc.so.6"
    assert info.compatible_with(read_elf(host_binary()))


def test_files_that_are_not_elf_are_told_apart(tmp_path: Path) -> None:
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert not is_elf(text) and not is_elf(tmp_path / "missing")
    truncated = tmp_path / "truncated"
    truncated.write_bytes(host_binary().read_bytes()[:80])
    assert is_elf(truncated)
    with pytest.raises(ElfError):
        read_elf(truncated)
