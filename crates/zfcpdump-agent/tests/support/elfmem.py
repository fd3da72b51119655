#!/usr/bin/env python3
"""An ELF core reader that shares no code with the project (standard library
only), used by the tests as an independent judge of elided dumps.

    elfmem.py CORE OUT START:END [START:END ...]

Reads the program headers of the big-endian ELF64 core CORE and writes the
physical memory of each range [START, END) (hex) to OUT, one after the other,
the way crash reads memory: every page comes from the first PT_LOAD whose
[p_paddr, p_paddr + p_memsz) contains it, bytes past p_filesz read as zeros.
An address that no PT_LOAD covers is an error (a gap). Prints one line per
PT_LOAD and the note types to stdout.
"""
import struct
import sys

PT_LOAD, PT_NOTE = 1, 4


def main():
    core, out, ranges = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(core, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 2:
        sys.exit("not a big-endian ELF64 file")
    e_type, e_machine = struct.unpack_from(">HH", data, 16)
    e_phoff, = struct.unpack_from(">Q", data, 32)
    e_phentsize, e_phnum = struct.unpack_from(">HH", data, 54)
    if e_type != 4 or e_machine != 22 or e_phentsize != 56:
        sys.exit("not an s390x core")
    loads = []
    for i in range(e_phnum):
        (p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz,
         p_align) = struct.unpack_from(">IIQQQQQQ", data, e_phoff + 56 * i)
        if p_type == PT_LOAD:
            if p_filesz > p_memsz or p_offset + p_filesz > len(data):
                sys.exit(f"bad PT_LOAD {i}")
            loads.append((p_paddr, p_memsz, p_offset, p_filesz, p_vaddr))
            print(f"LOAD paddr={p_paddr:#x} vaddr={p_vaddr:#x} offset={p_offset:#x} "
                  f"filesz={p_filesz:#x} memsz={p_memsz:#x}")
        elif p_type == PT_NOTE:
            pos, end = p_offset, p_offset + p_filesz
            types = []
            while pos + 12 <= end:
                namesz, descsz, n_type = struct.unpack_from(">III", data, pos)
                if namesz == 0 and descsz == 0 and n_type == 0:
                    break
                types.append(n_type)
                pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
            print("NOTES " + " ".join(f"{t:#x}" for t in types))
    with open(out, "wb") as o:
        for r in ranges:
            start, end = (int(x, 16) for x in r.split(":"))
            addr = start
            while addr < end:
                seg = next((s for s in loads if s[0] <= addr < s[0] + s[1]), None)
                if seg is None:
                    sys.exit(f"no PT_LOAD covers physical address {addr:#x}")
                paddr, memsz, offset, filesz, _ = seg
                n = min(end, paddr + memsz) - addr
                within = addr - paddr
                stored = max(0, min(n, filesz - within))
                o.write(data[offset + within:offset + within + stored])
                o.write(bytes(n - stored))
                addr += n


if __name__ == "__main__":
    main()
