"""OpenTDF's generated message classes, importable.

The message classes come from `otdf-python` (`otdf_python_proto`); we write
no protos of our own. Its policy modules import `buf.validate.validate_pb2`,
which no PyPI package provides under that name. protovalidate ships the same
file (`buf/validate/validate.proto`) as a serialized FileDescriptorProto for
its own runtime; we add those bytes to the default google.protobuf pool and
build a `buf.validate.validate_pb2` module from them, exactly as protoc's
generated `_pb2` module would do, then import the OpenTDF modules.
"""

from __future__ import annotations

import sys
import types

_SHIM_NAME = "buf.validate.validate_pb2"


def _install_validate_pb2() -> None:
    if _SHIM_NAME in sys.modules:
        return
    # The dependencies must be in the default pool before the file is added.
    from google.protobuf import descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2  # noqa: F401
    from google.protobuf import descriptor_pool
    from google.protobuf.internal import builder
    from protovalidate._gen.buf.validate import validate_pb as pv

    serialized = pv._DESC.proto.to_binary()
    pool = descriptor_pool.Default()
    try:
        file_desc = pool.FindFileByName("buf/validate/validate.proto")
    except KeyError:
        file_desc = pool.AddSerializedFile(serialized)
    if not hasattr(file_desc, "message_types_by_name"):  # AddSerializedFile returns a descriptor in upb/cpp
        file_desc = pool.FindFileByName("buf/validate/validate.proto")

    for pkg in ("buf", "buf.validate"):
        if pkg not in sys.modules:
            mod = types.ModuleType(pkg)
            mod.__path__ = []  # a namespace-like package: submodules come from sys.modules only
            sys.modules[pkg] = mod
    module = types.ModuleType(_SHIM_NAME)
    module.DESCRIPTOR = file_desc
    builder.BuildMessageAndEnumDescriptors(file_desc, module.__dict__)
    builder.BuildTopDescriptorsAndMessages(file_desc, _SHIM_NAME, module.__dict__)
    sys.modules[_SHIM_NAME] = module
    sys.modules["buf.validate"].validate_pb2 = module
    sys.modules["buf"].validate = sys.modules["buf.validate"]


_install_validate_pb2()

import otdf_python_proto  # noqa: E402  (registers the top-level aliases `common`, `kas`, `policy`)


def _import_generated(package: str, modules: tuple[str, ...]) -> list[types.ModuleType]:
    """Import generated modules of `package` (e.g. "policy.keymanagement") once, by top-level name.

    The connect modules in otdf-python import their pb2 siblings by top-level
    name (`import policy.keymanagement.key_management_pb2`), which re-runs the
    subpackage __init__ under a second name and fails as a circular import.
    We register the subpackage under its top-level name as a bare package (no
    __init__ run), import the modules through it, and alias the
    `otdf_python_proto.` names to the same module objects so that every
    importer sees one class per message type.
    """
    import importlib
    from pathlib import Path

    parent_name, _, leaf = package.rpartition(".")
    if package not in sys.modules:
        pkg = types.ModuleType(package)
        pkg.__path__ = [str(Path(otdf_python_proto.__file__).parent.joinpath(*package.split(".")))]
        pkg.__package__ = package
        sys.modules[package] = pkg
        if parent_name:
            setattr(importlib.import_module(parent_name), leaf, pkg)
    loaded = []
    for name in modules:
        mod = importlib.import_module(f"{package}.{name}")
        sys.modules.setdefault(f"otdf_python_proto.{package}.{name}", mod)
        loaded.append(mod)
    return loaded


key_management_pb2, key_management_connect = _import_generated(
    "policy.keymanagement", ("key_management_pb2", "key_management_connect"))
kasregistry_pb2, kasregistry_connect = _import_generated(
    "policy.kasregistry", ("key_access_server_registry_pb2", "key_access_server_registry_connect"))
kas_pb2, kas_connect = _import_generated("kas", ("kas_pb2", "kas_connect"))
common_pb2 = sys.modules["otdf_python_proto.common.common_pb2"]
objects_pb2 = sys.modules["otdf_python_proto.policy.objects_pb2"]
selectors_pb2 = sys.modules["otdf_python_proto.policy.selectors_pb2"]

__all__ = ["key_management_pb2", "key_management_connect", "kasregistry_pb2", "kasregistry_connect",
           "kas_pb2", "kas_connect", "common_pb2", "objects_pb2", "selectors_pb2"]
