"""
Domain and device configurations as data.

A configuration is a mapping in libxl's own JSON shape: what
``libxl_domain_config_to_json`` writes and ``libxl_domain_config_from_json``
reads, which is also what ``xl -N create`` prints.  The schema is libxl's
IDL, ``tools/libs/light/libxl_types.idl`` in Xen's source (4.17 here):
``libxl_domain_config`` has ``c_info`` (``libxl_domain_create_info``),
``b_info`` (``libxl_domain_build_info``, with the guest type's part under
``"type.pv"``, ``"type.pvh"`` or ``"type.hvm"``), ``disks``, ``nics`` and
the other device lists.  A disk is a ``libxl_device_disk``, a NIC a
``libxl_device_nic``.  libxl's conventions hold: enumerations are their
names (``"pv"``, ``"raw"``), defbools the strings ``"True"``, ``"False"``
(or ``"<default>"``), UUIDs and MACs strings.

This module is the pure-Python side: copying a configuration and giving
it a UUID, writing it as JSON, and the checks that make libxl's silences
into errors.  libxl does the parsing (:class:`~txlibxl.context.Context`
hands the JSON to it):

* **UUIDs.** libxl does not generate a UUID: a configuration without one
  would make a domain with the nil UUID.  As ``xl`` does,
  :func:`with_uuid` gives a configuration whose ``c_info.uuid`` is missing
  or nil a fresh random one, on a copy (the caller's mapping is never
  changed).
* **What libxl refuses** (an unknown enumeration value, a defbool that is
  not one, a number out of range) it refuses for the whole configuration
  with one message; :func:`check` finds the keys at fault
  (:func:`locate_refusal`) and raises
  :class:`~txlibxl.errors.InvalidConfiguration` with libxl's message and
  their paths.
* **What libxl ignores** without a word: keys it does not know, and values
  of the wrong JSON type (a string for a number, ``true`` for a defbool).
  :func:`check` compares what libxl kept with what was given
  (:func:`ignored_keys`) and refuses such a configuration too.
* **Disk specs** (xl's ``"phy:/dev/vg/guest,xvda,w"``) are parsed by
  libxlutil: :meth:`~txlibxl.context.Context.parse_disk_spec`; every
  operation that takes a disk takes a spec string or a mapping
  (:func:`device_argument`).
"""
from __future__ import annotations

import copy
import json
import uuid as uuidlib
from typing import Any, Callable, Dict, Iterator, List, Mapping, Sequence, Tuple, Union

from . import errors

__all__ = [
    "NIL_UUID",
    "new_uuid",
    "config_uuid",
    "with_uuid",
    "json_text",
    "device_argument",
    "libxl_json",
    "device_json",
    "check",
    "ignored_keys",
    "locate_refusal",
]

#: libxl's "no UUID".
NIL_UUID = "00000000-0000-0000-0000-000000000000"

Path = Tuple[Union[str, int], ...]
RoundTrip = Callable[[Mapping[str, Any]], Mapping[str, Any]]
#: ``round_trip_text(kind, json_text) -> json_text``: libxl reads JSON for
#: a ``kind`` and writes it back (the binding's ``Ctx.json_round_trip``).
TextRoundTrip = Callable[[str, str], str]

# A value standing in for another in a probe: libxl's parser either
# refuses it (the key is one libxl knows, with a value at its default) or
# passes it through (known), or ignores the key altogether (not known, or
# not of that JSON type).
_PROBE_TEXT = "\x01txlibxl-probe"
_PROBE_LIST: List[Any] = [[[_PROBE_TEXT]]]


def new_uuid() -> str:
    """
    A fresh random UUID, as libxl writes them.
    """
    return str(uuidlib.uuid4())


def config_uuid(config: Mapping[str, Any]) -> str:
    """
    The UUID of domain configuration C{config} (``c_info.uuid``), or
    :data:`NIL_UUID` if it has none.
    """
    c_info = config.get("c_info")
    value = c_info.get("uuid") if isinstance(c_info, Mapping) else None
    return value.lower() if isinstance(value, str) and value else NIL_UUID


def with_uuid(config: Mapping[str, Any]) -> Dict[str, Any]:
    """
    A deep copy of domain configuration C{config} whose ``c_info.uuid`` is
    set: kept if C{config} has one, a fresh one (:func:`new_uuid`) if it
    has none or the nil UUID.  C{config} itself is not changed.

    :raises TypeError: C{config} (or its ``c_info``) is not a mapping.
    """
    _check_mapping("the domain configuration", config)
    copied = copy.deepcopy(dict(config))
    c_info = copied.get("c_info")
    if c_info is None:
        c_info = copied["c_info"] = {}
    _check_mapping("c_info", c_info)
    c_info = copied["c_info"] = dict(c_info)
    if config_uuid(copied) == NIL_UUID:
        c_info["uuid"] = new_uuid()
    return copied


def json_text(config: Mapping[str, Any], what: str = "the configuration") -> str:
    """
    C{config} as JSON text for libxl.

    :raises TypeError: it is not a mapping, or holds something JSON has no
        form for.
    :raises ValueError: it holds a NaN or an infinity.
    """
    _check_mapping(what, config)
    try:
        return json.dumps(config, allow_nan=False)
    except TypeError as e:
        raise TypeError(f"{what} must be JSON data: {e}") from None
    except ValueError as e:
        raise ValueError(f"{what} must be JSON data: {e}") from None


def device_argument(device: Any, what: str) -> Union[str, Mapping[str, Any]]:
    """
    A device as the operations take it: a mapping (libxl's JSON shape), or
    for a disk, a ``str`` (xl's disk spec).

    :raises TypeError: neither.
    """
    if isinstance(device, str) and what == "disk":
        return device
    if isinstance(device, Mapping):
        return device
    shapes = "a disk spec str or a mapping" if what == "disk" else "a mapping"
    raise TypeError(f"the {what} must be {shapes}, not {type(device).__name__}")


def libxl_json(kind: str, given: Mapping[str, Any], round_trip_text: TextRoundTrip) -> str:
    """
    C{given}, a C{kind} (``"domain_config"``, ``"device_disk"``,
    ``"device_nic"``) in libxl's JSON shape, as JSON text for libxl, once
    :func:`check` found nothing libxl would refuse or ignore.

    :raises TypeError: C{given} is not JSON data in a mapping.
    :raises txlibxl.errors.InvalidConfiguration: see :func:`check`.
    """
    text = json_text(given, kind)

    def round_trip(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
        return json.loads(round_trip_text(kind, json_text(mapping, kind)))

    check(kind, given, round_trip)
    return text


def device_json(
    kind: str, device: Any, round_trip_text: TextRoundTrip, spec_to_json: Callable[[str], str]
) -> str:
    """
    A device argument (:func:`device_argument`) as libxl's JSON text for a
    C{kind} (``"device_disk"``, ``"device_nic"``): a disk spec through
    C{spec_to_json} (libxlutil), a mapping through :func:`libxl_json`.
    """
    device = device_argument(device, "disk" if kind == "device_disk" else "NIC")
    if isinstance(device, str):
        return spec_to_json(device)
    return libxl_json(kind, device, round_trip_text)


def check(kind: str, given: Mapping[str, Any], round_trip: RoundTrip) -> None:
    """
    Refuse C{given} (libxl's JSON for a C{kind}) if libxl would refuse it
    or ignore part of it.  C{round_trip(mapping)} has libxl read a mapping
    and write it back (raising
    :class:`~txlibxl.errors.InvalidConfiguration` if it cannot read it).

    :raises txlibxl.errors.InvalidConfiguration: libxl refused it (libxl's
        code and message, and ``refused``: the paths of the values at
        fault), or would have ignored keys (``ERROR_INVAL``, ``ignored``:
        their paths).
    """
    try:
        kept = round_trip(given)
    except errors.InvalidConfiguration as e:
        paths = locate_refusal(given, lambda mapping: _refuses(round_trip, mapping))
        where = f" (at {', '.join(paths)})" if paths else ""
        raise errors.InvalidConfiguration(e.code, e.call, f"{e.message}{where}", refused=paths) from None
    ignored = ignored_keys(given, kept, round_trip)
    if ignored:
        raise errors.InvalidConfiguration(
            errors.ERROR_INVAL,
            f"libxl_{kind}_from_json",
            f"libxl would ignore {', '.join(ignored)}: not a key of {kind} in libxl_types.idl, "
            'or a value of the wrong JSON type (defbools are the strings "True"/"False")',
            ignored=ignored,
        )


def ignored_keys(given: Mapping[str, Any], kept: Mapping[str, Any], round_trip: RoundTrip) -> Tuple[str, ...]:
    """
    The paths of the keys of C{given} that libxl dropped when it read it
    (C{kept} is what it wrote back).

    libxl leaves out of its JSON every value equal to its default, so a
    key missing from C{kept} is either ignored or at its default: each one
    (with a value that is not empty) is probed with another value; a key
    libxl knows then comes back, or makes libxl refuse the probe.  Keys
    given a value of the wrong JSON kind (an object for a number) are
    ignored too.
    """
    found = []
    for path, value in _missing(given, kept, ()):
        if not _known(given, path, value, round_trip):
            found.append(_path_text(path))
    return tuple(found)


def locate_refusal(given: Mapping[str, Any], refuses: Callable[[Mapping[str, Any]], bool]) -> List[str]:
    """
    The paths of the smallest parts of C{given} that libxl refuses alone
    (C{refuses(mapping)} says whether it refuses a mapping): each key's
    value is tried on its own, and a refused one is searched further.
    """
    found: List[str] = []

    def search(path: Path, value: Any) -> None:
        children = list(_children(value))
        refused = [(key, child) for key, child in children if refuses(_only(given, path + (key,), child))]
        if not refused:
            found.append(_path_text(path))
            return
        for key, child in refused:
            search(path + (key,), child)

    for key, child in _children(given):
        if refuses(_only(given, (key,), child)):
            search((key,), child)
    return found


# -- helpers ------------------------------------------------------------


def _check_mapping(what: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping (libxl's JSON object), not {type(value).__name__}")


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _missing(given: Any, kept: Any, path: Path) -> Iterator[Tuple[Path, Any]]:
    """(path, value) of what C{given} has and C{kept} lacks, recursively."""
    if isinstance(given, Mapping):
        for key, value in given.items():
            if _empty(value):
                continue
            here = path + (key,)
            if not isinstance(kept, Mapping) or key not in kept:
                yield here, value
            elif _kind(value) != _kind(kept[key]):
                yield here, None  # a different JSON kind: libxl skipped it
            else:
                yield from _missing(value, kept[key], here)
    elif isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        for index, (value, other) in enumerate(zip(given, kept)):
            yield from _missing(value, other, path + (index,))


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return "scalar"


def _known(given: Mapping[str, Any], path: Path, value: Any, round_trip: RoundTrip) -> bool:
    """Whether libxl knows the key at C{path} with C{value}'s JSON kind."""
    if value is None or isinstance(value, Mapping):
        return False  # of another kind than libxl's, or an object libxl would have written back
    probe = _probe_value(value)
    try:
        kept = round_trip(_replaced(given, path, probe))
    except errors.InvalidConfiguration:
        return True  # libxl read the key, and refused the probe
    return _lookup(kept, path) is not None


def _probe_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value - 1 if value > 0 else value + 1
    if isinstance(value, float):
        return value + 1.0
    if isinstance(value, list):
        return _PROBE_LIST
    return _PROBE_TEXT


def _children(value: Any) -> Iterator[Tuple[Union[str, int], Any]]:
    if isinstance(value, Mapping):
        yield from value.items()
    elif isinstance(value, list):
        yield from enumerate(value)


def _only(given: Mapping[str, Any], path: Path, value: Any) -> Dict[str, Any]:
    """C{given} cut down to the one value at C{path} (lists to one element)."""
    def build(level: Any, rest: Path) -> Any:
        key = rest[0]
        inner = value if len(rest) == 1 else build(level[key], rest[1:])
        return [inner] if isinstance(level, list) else {key: inner}

    return build(given, path)


def _replaced(given: Mapping[str, Any], path: Path, value: Any) -> Dict[str, Any]:
    copied = copy.deepcopy(dict(given))
    level: Any = copied
    for key in path[:-1]:
        level = level[key]
    level[path[-1]] = value
    return copied


def _lookup(value: Any, path: Path) -> Any:
    for key in path:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and isinstance(key, int) and key < len(value):
            value = value[key]
        else:
            return None
    return value


def _refuses(round_trip: RoundTrip, mapping: Mapping[str, Any]) -> bool:
    try:
        round_trip(mapping)
    except errors.InvalidConfiguration:
        return True
    return False


def _path_text(path: Sequence[Union[str, int]]) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text
