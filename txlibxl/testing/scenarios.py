"""
The scenarios a simulated host can play: files of the user's, or the ones
shipped in ``txlibxl/sim/scenarios/`` named without their ``.json``.
"""
from __future__ import annotations

import os
from typing import List

__all__ = ["shipped_scenarios", "scenario_path"]


def _scenario_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sim", "scenarios")


def shipped_scenarios() -> List[str]:
    """The names of the scenarios shipped with txlibxl (``demo``...)."""
    try:
        return sorted(n[: -len(".json")] for n in os.listdir(_scenario_dir()) if n.endswith(".json"))
    except OSError:
        return []


def scenario_path(scenario: str) -> str:
    """
    The absolute path of C{scenario}: a path to a scenario file, or the
    name of a shipped scenario.

    :raises ValueError: neither.
    """
    if os.path.isfile(scenario):
        return os.path.abspath(scenario)
    shipped = os.path.join(_scenario_dir(), scenario + ".json")
    if os.sep not in scenario and not scenario.endswith(".json") and os.path.isfile(shipped):
        return shipped
    names = ", ".join(shipped_scenarios()) or "none"
    raise ValueError(f"no scenario file {scenario!r} and no shipped scenario of that name (shipped: {names})")
