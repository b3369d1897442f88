"""
``python -m txlibxl --version``: the installed txlibxl's version.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m txlibxl",
        description="txlibxl: libxenlight's event machinery on an event loop. "
        "The daemon is `twistd libxl-events`; the simulated host is `python -m txlibxl.sim`.",
    )
    parser.add_argument("--version", action="version", version=f"txlibxl {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
