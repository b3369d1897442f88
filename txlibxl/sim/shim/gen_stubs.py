#!/usr/bin/env python3
"""Generate ``xcshim_stubs.inc``: fail-loud stubs for every ``xc_*`` symbol
that libxenlight (and libxenguest, which it loads) import and the shim does
not simulate.

Usage: ``python3 gen_stubs.py [--check]`` from anywhere.  Needs gcc, nm and
the installed Xen headers (libxen-dev).  With ``--check`` it writes nothing
and exits 1 if the checked-in file is out of date.

How: the symbol list comes from ``nm -D --undefined-only`` on the two
libraries; the prototypes come from gcc's ``-aux-info`` dump of
``<xenctrl.h>`` and ``<xenguest.h>``, so each stub is defined with exactly
the installed declaration (the shim includes those headers, so a mismatch
is a compile error).  Symbols the shim defines itself (found in its
``xcshim*.c`` files) are left out, and so are symbols no installed header
declares (libxenctrl's private ones, which only libxenguest's internals
call); the latter are listed in the generated file's header.

The libxenguest entry points (the ``xc_dom_*`` builder libxenlight
calls, ``xc_domain_save``/``restore`` that libxl-save-helper calls,
``xc_suspend_*``...: every function libxenguest exports) are stubbed like
the libxenctrl ones unless the shim serves them, so no libxenguest code
ever runs on the shim's handle (which has none of libxenctrl's insides).

Each stub calls ``XCSHIM_NOT_SIMULATED("name")`` (sets errno=ENOSYS and
says so on stderr) and returns a failure value its caller can check.  The
kind of the return type is asked of the compiler (``__builtin_classify_type``
on the installed declaration), so typedefs are seen through: ``NULL`` for
every pointer (``xc_cpumap_t`` is ``uint8_t *``: ``(xc_cpumap_t)-1`` would
be a bogus pointer its caller dereferences), ``false`` for ``_Bool``,
nothing for ``void``, ``-1`` for signed integers and enums, and for the
few functions whose documented failure value is another one (an unsigned
frame number that fails as 0), that value (``FAILURE_VALUES``).  A return
type of any other kind (a struct by value, a float) stops the generator.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "xcshim_stubs.inc")
SHIM_SOURCES = os.path.join(HERE, "xcshim*.c")
LIBDIR = "/usr/lib/x86_64-linux-gnu"
LIBRARIES = ("libxenlight.so.4.17", "libxenguest.so.4.17")
HEADERS = ("xenctrl.h", "xenguest.h")


def _xc_symbols(lib: str, which: str) -> Set[str]:
    out = subprocess.run(
        ["nm", "-D", which, os.path.join(LIBDIR, lib)],
        check=True, capture_output=True, text=True,
    ).stdout
    names: Set[str] = set()
    for line in out.splitlines():
        fields = line.split()
        if which == "--defined-only" and (len(fields) < 3 or fields[1] not in "TW"):
            continue  # functions only
        name = fields[-1].split("@")[0]
        if name.startswith("xc_"):
            names.add(name)
    return names


def imported_symbols() -> Set[str]:
    """The xc_* functions the two libraries import, and every xc_* function
    libxenguest exports (libxl's helpers, such as libxl-save-helper, call
    those directly: with the shim preloaded they must fail loudly too)."""
    names: Set[str] = set()
    for lib in LIBRARIES:
        names |= _xc_symbols(lib, "--undefined-only")
    return names | _xc_symbols("libxenguest.so.4.17", "--defined-only")


#: Functions whose failure value is not the one their type suggests.
FAILURE_VALUES = {
    # libxenctrl returns 0 (no frame) when the exchange fails.
    "xc_make_page_below_4G": "0",
    # libxenguest's INVALID_PFN.
    "xc_dom_alloc_page": "(xen_pfn_t)-1",
    # No gzip stream found: the uncompressed size is unknown.
    "xc_dom_check_gzip": "0",
    # Addresses from the kernel's ELF notes: none known.
    "xc_dom_virt_base": "0",
    "xc_dom_virt_entry": "0",
    "xc_dom_virt_hypercall": "0",
    # No CPUID featureset is known.
    "xc_get_cpu_featureset_size": "0",
}

#: ``__builtin_classify_type`` results (gcc's typeclass.h).
_VOID, _INTEGER, _ENUMERAL, _BOOLEAN, _POINTER = 0, 1, 3, 4, 5


def shim_definitions() -> Set[str]:
    """Non-static functions named xc_* defined in the shim's C files."""
    pattern = re.compile(r"^(?!static\b)[A-Za-z_][\w \*]*?\b(xc_\w+)\(")
    names: Set[str] = set()
    for path in sorted(glob.glob(SHIM_SOURCES)):
        with open(path) as f:
            names.update(m.group(1) for m in map(pattern.match, f) if m)
    return names


def _header_source() -> str:
    return "#define XC_WANT_COMPAT_MAP_FOREIGN_API 1\n" + "".join(f"#include <{h}>\n" for h in HEADERS)


def classify(types: Set[str]) -> Dict[str, Tuple[int, bool]]:
    """
    Return type -> (gcc type class, is signed), asked of the compiler: a
    probe program prints ``__builtin_classify_type`` and the signedness of
    each type as the installed headers define it.  C's ``_Bool`` is an
    integer type to gcc; it is told apart as the one integer type in which
    2 converts to 1 (and reported as ``_BOOLEAN``).
    """
    ordered = sorted(t for t in types if t != "void")
    lines = [_header_source(), "#include <stdio.h>", "int main(void) {"]
    for t in ordered:
        kind = f"__builtin_classify_type(*({t} *)0)"
        lines.append(
            f'    printf("%d %d\\n", {kind} == {_INTEGER} && ({t})2 == ({t})1 ? {_BOOLEAN} : {kind}, '
            f"{kind} == {_POINTER} ? 0 : (({t})-1 < ({t})0));"
        )
    lines += ["    return 0;", "}"]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "classify.c")
        exe = os.path.join(tmp, "classify")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run(["gcc", "-std=gnu11", "-w", "-o", exe, src], check=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout.split("\n")
    result: Dict[str, Tuple[int, bool]] = {"void": (_VOID, False)}
    for t, line in zip(ordered, out):
        kind, signed = line.split()
        result[t] = (int(kind), signed == "1")
    return result


def failure_value(name: str, ret: str, kind: Tuple[int, bool]) -> "str | None":
    """The C expression a stub returns (None: it returns nothing)."""
    if name in FAILURE_VALUES:
        return FAILURE_VALUES[name]
    typeclass, signed = kind
    if typeclass == _VOID:
        return None
    if typeclass == _POINTER:
        return "NULL"
    if typeclass == _BOOLEAN:
        return "false"
    if typeclass == _ENUMERAL or (typeclass == _INTEGER and signed):
        return f"({ret})-1"
    raise SystemExit(f"gen_stubs: no failure value for {name} returning {ret!r} "
                     f"(type class {typeclass}, signed={signed}): add it to FAILURE_VALUES")


def prototypes() -> Dict[str, Tuple[str, List[str]]]:
    """name -> (return type, parameter types) from gcc -aux-info."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "protos.c")
        aux = os.path.join(tmp, "protos.aux")
        with open(src, "w") as f:
            f.write(_header_source())
        subprocess.run(
            ["gcc", "-std=gnu11", "-fsyntax-only", "-aux-info", aux, src],
            check=True,
        )
        with open(aux) as f:
            lines = f.read().splitlines()
    result: Dict[str, Tuple[str, List[str]]] = {}
    decl = re.compile(r"^/\* (\S+):\d+:\w+ \*/ extern (.*?)\b(xc_\w+) \((.*)\);$")
    for line in lines:
        m = decl.match(line)
        if m and "/include/" in m.group(1):
            result[m.group(3)] = (m.group(2).strip(), split_params(m.group(4)))
    return result


def split_params(params: str) -> List[str]:
    out, depth, cur = [], 0, ""
    for ch in params:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += ch in "(["
        depth -= ch in ")]"
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def name_param(ptype: str, index: int) -> str:
    name = f"p{index}"
    if ptype == "...":
        return ptype
    if "(*)" in ptype:
        return ptype.replace("(*)", f"(*{name})", 1)
    if ptype.endswith("]"):
        i = ptype.index("[")
        return f"{ptype[:i]}{name}{ptype[i:]}"
    return f"{ptype} {name}"


def stub(name: str, ret: str, params: List[str], value: "str | None") -> str:
    if params in ([], ["void"]):
        arglist, names = "void", []
    else:
        arglist = ", ".join(name_param(p, i) for i, p in enumerate(params))
        names = [f"p{i}" for i, p in enumerate(params) if p != "..."]
    decl = f"{ret}{'' if ret.endswith('*') else ' '}{name}({arglist})"
    body = "".join(f"    (void){n};\n" for n in names)
    body += f'    XCSHIM_NOT_SIMULATED("{name}");\n'
    if value is not None:
        body += f"    return {value};\n"
    return f"{decl}\n{{\n{body}}}\n"


def generate() -> str:
    wanted = imported_symbols() - shim_definitions()
    protos = prototypes()
    stubbed = sorted(n for n in wanted if n in protos)
    skipped = sorted(n for n in wanted if n not in protos)
    head = [
        "/* Generated by gen_stubs.py from nm and the installed Xen headers: do not edit.",
        " *",
        f" * {len(stubbed)} fail-loud stubs for xc_* imported by {', '.join(LIBRARIES)}",
        " * or exported by libxenguest, and not served by the shim.",
        " * Not stubbed (no installed header declares them; libxenctrl-private,",
        " * reachable only from libxenguest internals that are themselves stubbed):",
    ]
    line = " *  "
    for n in skipped:
        if len(line) + len(n) + 1 > 78:
            head.append(line)
            line = " *  "
        line += " " + n
    head += [line, " */", ""]
    kinds = classify({protos[n][0] for n in stubbed})
    body = [stub(n, *protos[n], failure_value(n, protos[n][0], kinds[protos[n][0]])) for n in stubbed]
    return "\n".join(head) + "\n".join(body)


def main(argv: List[str]) -> int:
    text = generate()
    if "--check" in argv:
        try:
            with open(OUTPUT) as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{OUTPUT} is out of date; run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    with open(OUTPUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
