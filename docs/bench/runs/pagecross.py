#!/usr/bin/env python3
"""Lists the backward branches of an x86-64 binary whose target lies on
another 4 KiB page, within 512 bytes: loops that cross a page, which QEMU
TCG runs without chaining their back edge (see kernel.md, "A TCG artefact:
a hot loop across a page"). One line per branch: function, target, branch.

    python3 docs/bench/runs/pagecross.py target/guest/x86_64-unknown-linux-gnu/release/rmemring
"""
import re
import subprocess
import sys

out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", sys.argv[1]],
                     capture_output=True, text=True, check=True).stdout
function = None
for line in out.split("\n"):
    m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
    if m:
        function = m.group(2)
        continue
    m = re.match(r"^\s+([0-9a-f]+):\s+(j\w+)\s+([0-9a-f]+) <", line)
    if m:
        at, to = int(m.group(1), 16), int(m.group(3), 16)
        if to < at and at >> 12 != to >> 12 and at - to < 512:
            print(function, hex(to), hex(at))
