"""
Configurations as data (txlibxl.config), without libxl: UUIDs, JSON text,
and the checks that turn what libxl would silently ignore or refuse into
errors, against a stand-in for libxl's JSON parser that behaves as
libxl's generated one does (unknown keys and values of the wrong JSON type
skipped, defaults left out of its output, bad enumeration values refusing
the whole configuration).
"""
from __future__ import annotations

import uuid
from typing import Any, Dict, Mapping

from twisted.trial.unittest import SynchronousTestCase

from txlibxl import config, errors

ENUM = ("pv", "pvh", "hvm")
# key -> (JSON type, default) ; a dict is an aggregate, always written back
SCHEMA: Dict[str, Any] = {
    "c_info": {"name": (str, None), "type": ("enum", None), "uuid": (str, config.NIL_UUID)},
    "b_info": {"max_vcpus": (int, 0), "claim_mode": ("defbool", "<default>"), "kernel": (str, None)},
    "disks": [{"vdev": (str, None), "readwrite": (int, 0)}],
}


def fake_libxl(given: Any, schema: Any = SCHEMA) -> Any:
    """libxl_<type>_from_json then _to_json, as libxl 4.17 does them."""
    if isinstance(schema, list):
        return [fake_libxl(item, schema[0]) for item in given] if isinstance(given, list) else []
    out = {}
    given = given if isinstance(given, Mapping) else {}
    for key, spec in schema.items():
        if isinstance(spec, (dict, list)):
            value = fake_libxl(given.get(key), spec)
            if isinstance(spec, dict) or value:
                out[key] = value
            continue
        kind, default = spec
        if key not in given:
            continue
        value = given[key]
        if kind == "enum":
            if not isinstance(value, str):
                continue
            if value not in ENUM:
                raise errors.InvalidConfiguration(errors.ERROR_FAIL, "from_json", "cannot convert")
        elif kind == "defbool":
            if not isinstance(value, str):
                continue
            if value not in ("True", "False", "<default>"):
                raise errors.InvalidConfiguration(errors.ERROR_FAIL, "from_json", "cannot convert")
        elif not isinstance(value, kind) or isinstance(value, bool):
            continue
        if value != default:
            out[key] = value
    return out


def check(given: Mapping[str, Any]) -> None:
    config.check("domain_config", given, fake_libxl)


class UUIDTests(SynchronousTestCase):
    def test_a_config_without_uuid_gets_a_fresh_one(self) -> None:
        first = config.with_uuid({"c_info": {"name": "g"}})
        second = config.with_uuid({"c_info": {"name": "g"}})
        self.assertEqual(uuid.UUID(first["c_info"]["uuid"]).version, 4)
        self.assertNotEqual(first["c_info"]["uuid"], second["c_info"]["uuid"])

    def test_the_nil_uuid_counts_as_none(self) -> None:
        given = config.with_uuid({"c_info": {"uuid": config.NIL_UUID}})
        self.assertNotEqual(given["c_info"]["uuid"], config.NIL_UUID)

    def test_a_given_uuid_is_kept(self) -> None:
        mine = str(uuid.uuid4())
        self.assertEqual(config.with_uuid({"c_info": {"uuid": mine}})["c_info"]["uuid"], mine)

    def test_the_callers_mapping_is_never_changed(self) -> None:
        given = {"c_info": {"name": "g"}, "disks": [{"vdev": "xvda"}]}
        copied = config.with_uuid(given)
        copied["disks"][0]["vdev"] = "xvdb"
        self.assertEqual(given, {"c_info": {"name": "g"}, "disks": [{"vdev": "xvda"}]})

    def test_a_config_is_a_mapping(self) -> None:
        self.assertRaises(TypeError, config.with_uuid, [1, 2])
        self.assertRaises(TypeError, config.with_uuid, {"c_info": "g"})


class JSONTextTests(SynchronousTestCase):
    def test_only_json_data_is_accepted(self) -> None:
        self.assertEqual(config.json_text({"a": [1, "x", None]}), '{"a": [1, "x", null]}')
        self.assertRaises(TypeError, config.json_text, {"a": object()})
        self.assertRaises(ValueError, config.json_text, {"a": float("nan")})
        self.assertRaises(TypeError, config.json_text, "{}")

    def test_a_disk_is_a_spec_or_a_mapping_a_nic_a_mapping(self) -> None:
        self.assertEqual(config.device_argument("phy:/dev/x,xvda,w", "disk"), "phy:/dev/x,xvda,w")
        self.assertEqual(config.device_argument({"vdev": "xvda"}, "disk"), {"vdev": "xvda"})
        self.assertRaises(TypeError, config.device_argument, "bridge=xenbr0", "NIC")
        self.assertRaises(TypeError, config.device_argument, 3, "disk")


class IgnoredKeyTests(SynchronousTestCase):
    def assertIgnored(self, given: Mapping[str, Any], *paths: str) -> None:
        with self.assertRaises(errors.InvalidConfiguration) as caught:
            check(given)
        self.assertEqual(caught.exception.ignored, paths)
        self.assertEqual(caught.exception.code, errors.ERROR_INVAL)
        for path in paths:
            self.assertIn(path, caught.exception.message)

    def test_a_config_libxl_keeps_whole_passes(self) -> None:
        check({"c_info": {"name": "g", "type": "pv"}, "b_info": {"max_vcpus": 2, "claim_mode": "True"}})

    def test_values_equal_to_libxls_defaults_pass(self) -> None:
        check({"c_info": {"uuid": config.NIL_UUID}, "b_info": {"max_vcpus": 0, "claim_mode": "<default>"}})

    def test_an_unknown_key_is_refused_by_its_path(self) -> None:
        self.assertIgnored({"b_info": {"max_vcpu": 2}}, "b_info.max_vcpu")
        self.assertIgnored({"zzz": "x"}, "zzz")

    def test_a_value_of_the_wrong_json_type_is_refused(self) -> None:
        self.assertIgnored({"b_info": {"max_vcpus": "2"}}, "b_info.max_vcpus")
        self.assertIgnored({"b_info": {"claim_mode": True}}, "b_info.claim_mode")
        self.assertIgnored({"b_info": "pv"}, "b_info")

    def test_keys_inside_list_items_are_checked(self) -> None:
        self.assertIgnored({"disks": [{"vdev": "xvda"}, {"vdevv": "xvdb"}]}, "disks[1].vdevv")

    def test_empty_values_are_never_reported(self) -> None:
        check({"zzz": None, "yyy": [], "xxx": {}, "www": ""})


class RefusalTests(SynchronousTestCase):
    def test_a_refused_value_is_named_by_its_path_with_libxls_message(self) -> None:
        with self.assertRaises(errors.InvalidConfiguration) as caught:
            check({"c_info": {"name": "g", "type": "bogus"}, "b_info": {"max_vcpus": 2}})
        self.assertEqual(caught.exception.refused, ("c_info.type",))
        self.assertEqual(caught.exception.code, errors.ERROR_FAIL)
        self.assertIn("cannot convert", caught.exception.message)

    def test_every_refused_value_is_found(self) -> None:
        with self.assertRaises(errors.InvalidConfiguration) as caught:
            check({"c_info": {"type": "bogus"}, "b_info": {"claim_mode": "yes"}})
        self.assertEqual(caught.exception.refused, ("c_info.type", "b_info.claim_mode"))

    def test_a_refusal_inside_a_list_is_found(self) -> None:
        paths = config.locate_refusal(
            {"disks": [{"vdev": "a"}, {"vdev": "b", "bad": 1}]},
            lambda mapping: "bad" in repr(mapping),
        )
        self.assertEqual(paths, ["disks[1].bad"])
