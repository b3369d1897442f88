"""
The typed errors: one class per libxl error code, matching the installed
headers and the compiled binding.
"""
from __future__ import annotations

import os
import pickle
import re
from typing import Dict

from twisted.trial import unittest

from txlibxl import errors

HEADER = "/usr/include/_libxl_types.h"


def header_error_codes() -> Dict[str, int]:
    """
    ``libxl_error``'s names and values, read from the installed header.
    """
    with open(HEADER) as f:
        text = f.read()
    enum = re.search(r"typedef enum libxl_error \{(.*?)\} libxl_error;", text, re.S)
    if enum is None:
        raise AssertionError(f"no libxl_error enum in {HEADER}")
    return {
        name: int(value)
        for name, value in re.findall(r"^\s*(ERROR_\w+)\s*=\s*(-?\d+)\s*,", enum.group(1), re.M)
    }


def compiled_lib():
    from tests.core.test_binding import native

    return native()[1]


class TableMatchesHeadersTests(unittest.TestCase):
    def setUp(self) -> None:
        if not os.path.exists(HEADER):
            raise unittest.SkipTest(f"{HEADER} is not installed (libxen-dev)")

    def test_the_table_lists_exactly_the_headers_codes_in_order(self) -> None:
        self.assertEqual(list(errors.ERROR_CODES), list(header_error_codes().items()))

    def test_each_code_has_a_module_constant_of_its_name(self) -> None:
        for name, code in header_error_codes().items():
            self.assertEqual(getattr(errors, name), code, name)

    def test_the_compiled_binding_has_the_same_codes(self) -> None:
        lib = compiled_lib()
        in_lib = {name: getattr(lib, name) for name in dir(lib) if name.startswith("ERROR_")}
        self.assertEqual(in_lib, dict(errors.ERROR_CODES))


class FromCodeTests(unittest.TestCase):
    def test_each_code_gives_its_own_class(self) -> None:
        for cls in errors.ERROR_CLASSES:
            error = errors.from_code(cls.code, "libxl_x")
            self.assertIs(type(error), cls)
            self.assertEqual(error.code, cls.code)

    def test_the_classes_are_distinct_libxl_errors(self) -> None:
        self.assertEqual(len(set(errors.ERROR_CLASSES)), len(errors.ERROR_CODES))
        for cls in errors.ERROR_CLASSES:
            self.assertTrue(issubclass(cls, errors.LibxlError))
            self.assertIs(getattr(errors, cls.__name__), cls)

    def test_the_error_carries_code_call_and_message(self) -> None:
        error = errors.from_code(-21, "libxl_domain_info", "domain 7 is gone")
        self.assertEqual((error.code, error.call, error.message), (-21, "libxl_domain_info", "domain 7 is gone"))
        self.assertEqual(str(error), "libxl_domain_info: domain 7 is gone (ERROR_DOMAIN_NOTFOUND, -21)")

    def test_without_a_message_the_codes_description_is_used(self) -> None:
        self.assertEqual(errors.from_code(-21, "c").message, errors.DomainNotFound.description)

    def test_an_unknown_code_gives_a_plain_libxl_error(self) -> None:
        for code in (-99, 7):  # a newer libxl's code; a hook's positive value
            error = errors.from_code(code, "libxl_x")
            self.assertIs(type(error), errors.LibxlError)
            self.assertEqual(error.code, code)

    def test_zero_is_success_not_an_error(self) -> None:
        self.assertRaises(ValueError, errors.from_code, 0, "libxl_x")

    def test_a_code_must_be_an_int(self) -> None:
        self.assertRaises(TypeError, errors.from_code, "-3", "libxl_x")
        self.assertRaises(TypeError, errors.from_code, True, "libxl_x")

    def test_a_subclass_made_without_a_code_uses_its_own(self) -> None:
        error = errors.InvalidArgument(call="evenable", message="bad vdev")
        self.assertEqual(error.code, errors.ERROR_INVAL)

    def test_the_base_class_needs_a_code(self) -> None:
        self.assertRaises(TypeError, errors.LibxlError, None, "c")

    def test_errors_survive_pickling(self) -> None:
        error = errors.from_code(-22, "libxl_domain_destroy", "aborted by the user")
        copy = pickle.loads(pickle.dumps(error))
        self.assertIs(type(copy), errors.OperationAborted)
        self.assertEqual((copy.code, copy.call, copy.message), (error.code, error.call, error.message))


class NamedClassesTests(unittest.TestCase):
    def test_invalid_argument_is_a_value_error(self) -> None:
        self.assertTrue(issubclass(errors.InvalidArgument, ValueError))
        self.assertEqual(errors.InvalidArgument.code, -6)

    def test_operation_aborted_is_the_class_of_error_aborted(self) -> None:
        self.assertIs(errors.error_class(errors.ERROR_ABORTED), errors.OperationAborted)

    def test_unknown_child_is_the_class_of_error_unknown_child(self) -> None:
        self.assertIs(errors.error_class(-14), errors.UnknownChild)

    def test_every_error_is_a_txlibxl_error(self) -> None:
        for cls in (
            errors.LibxlError,
            errors.ContextClosed,
            errors.ContextFailed,
            errors.LibxlDisaster,
            errors.ContextStateError,
            errors.ReentrantCall,
            *errors.ERROR_CLASSES,
        ):
            self.assertTrue(issubclass(cls, errors.TxlibxlError), cls)

    def test_a_reentrant_call_is_a_state_error(self) -> None:
        self.assertTrue(issubclass(errors.ReentrantCall, errors.ContextStateError))
        self.assertTrue(issubclass(errors.ContextStateError, RuntimeError))


class LibxlDisasterTests(unittest.TestCase):
    def test_the_disaster_carries_type_message_and_errno(self) -> None:
        disaster = errors.LibxlDisaster(2, "watch pipe broken", 32)
        self.assertEqual((disaster.type, disaster.message, disaster.errnoval), (2, "watch pipe broken", 32))
        self.assertIn("watch pipe broken", str(disaster))
        self.assertIn("errno 32", str(disaster))

    def test_type_zero_means_any_event_type_may_be_lost(self) -> None:
        self.assertIn("any type", str(errors.LibxlDisaster(0, "oom", -1)))
