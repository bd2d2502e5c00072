"""Just enough ELF to know what a binary needs from the dynamic loader.

The image builder copies into the rootfs only the shared libraries the frozen agent
needs, and the tests check that nothing needed is missing. Both read the same three
facts from each ELF file: its interpreter (``PT_INTERP``), its ``DT_NEEDED`` names
and its ``DT_RPATH``/``DT_RUNPATH``. Reading them here, rather than running ``ldd``,
executes nothing and gives the same answer for a file outside its final place.
"""

from __future__ import annotations

import struct
from pathlib import Path

import attrs

ELF_MAGIC = b"\x7fELF"

_PT_LOAD = 1
_PT_DYNAMIC = 2
_PT_INTERP = 3
_DT_NULL = 0
_DT_NEEDED = 1
_DT_STRTAB = 5
_DT_SONAME = 14
_DT_RPATH = 15
_DT_RUNPATH = 29


class ElfError(ValueError):
    """The file starts like ELF but its headers do not hold together."""


@attrs.frozen
class ElfInfo:
    elf_class: int  # 1: 32-bit, 2: 64-bit
    machine: int  # e_machine (62 is x86-64)
    interpreter: str | None  # the dynamic loader a program asks for
    needed: tuple[str, ...]
    soname: str | None
    search_path: tuple[str, ...]  # DT_RPATH and DT_RUNPATH entries, unexpanded

    def compatible_with(self, other: ElfInfo) -> bool:
        return (self.elf_class, self.machine) == (other.elf_class, other.machine)


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == ELF_MAGIC
    except OSError:
        return False


def read_elf(path: Path) -> ElfInfo:
    data = path.read_bytes()
    try:
        return _parse(data)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ElfError(f"{path}: malformed ELF: {exc}") from None


def _parse(data: bytes) -> ElfInfo:
    if data[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file")
    elf_class, byte_order = data[4], data[5]
    if elf_class not in (1, 2) or byte_order not in (1, 2):
        raise ElfError("unknown ELF class or byte order")
    end = "<" if byte_order == 1 else ">"
    wide = elf_class == 2
    word = "Q" if wide else "I"
    machine = struct.unpack_from(end + "H", data, 18)[0]
    if wide:
        phoff = struct.unpack_from(end + "Q", data, 32)[0]
        phentsize, phnum = struct.unpack_from(end + "HH", data, 54)
    else:
        phoff = struct.unpack_from(end + "I", data, 28)[0]
        phentsize, phnum = struct.unpack_from(end + "HH", data, 42)

    loads: list[tuple[int, int, int]] = []  # (vaddr, file offset, file size)
    interpreter: str | None = None
    dynamic: tuple[int, int] | None = None
    for index in range(phnum):
        at = phoff + index * phentsize
        if wide:
            p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from(
                end + "IIQQQQ", data, at)
        else:
            p_type, offset, vaddr, _paddr, filesz = struct.unpack_from(end + "IIIII", data, at)
        if p_type == _PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif p_type == _PT_INTERP:
            interpreter = data[offset:offset + filesz].split(b"\0", 1)[0].decode()
        elif p_type == _PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:  # statically linked: needs nothing from the loader
        return ElfInfo(elf_class, machine, interpreter, (), None, ())

    entries: list[tuple[int, int]] = []
    entry_size = struct.calcsize(end + word + word)
    offset, size = dynamic
    for at in range(offset, offset + size - entry_size + 1, entry_size):
        tag, value = struct.unpack_from(end + word + word, data, at)
        if tag == _DT_NULL:
            break
        entries.append((tag, value))
    strtab_vaddr = next((value for tag, value in entries if tag == _DT_STRTAB), None)
    if strtab_vaddr is None:
        raise ElfError("dynamic section without a string table")
    strtab = _file_offset(loads, strtab_vaddr)

    def string(at: int) -> str:
        start = strtab + at
        return data[start:data.index(b"\0", start)].decode()

    needed = tuple(string(value) for tag, value in entries if tag == _DT_NEEDED)
    soname = next((string(value) for tag, value in entries if tag == _DT_SONAME), None)
    search: list[str] = []
    for tag, value in entries:
        if tag in (_DT_RPATH, _DT_RUNPATH):
            search.extend(part for part in string(value).split(":") if part)
    return ElfInfo(elf_class, machine, interpreter, needed, soname, tuple(search))


def _file_offset(loads: list[tuple[int, int, int]], vaddr: int) -> int:
    for seg_vaddr, seg_offset, seg_size in loads:
        if seg_vaddr <= vaddr < seg_vaddr + seg_size:
            return vaddr - seg_vaddr + seg_offset
    raise ElfError(f"address {vaddr:#x} is in no loaded segment")
