"""Build a Python key-manager plugin into a C-ABI shared library.

    python plugins/_pyembed/build.py PLUGIN.toml --out build/plugins/<manager>-manager.so
                                     [--tmpdir build/pyembed/<manager>]

PLUGIN.toml declares the plugin (see README.md). The result exports only
km_plugin_init; its C side is adapter.c, its Python side km_pyembed.runtime
bound to the declared manager class. The plugin's source dirs (and
km_pyembed) are baked in relative to the output .so, and a plain C host's
interpreter is the venv found at or above the .so (adapter.c), so a build
tree or install moved as a whole keeps working without extra environment.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import sysconfig
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HEADER_DIR = REPO / "include"
CAPABILITY_BITS = {"wrap": 2, "unwrap": 4, "public_key": 8, "probe": 16, "kem": 32}
THREAD_SAFE_BIT = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

# What runtime.py implements (extern "Python") and the C helpers it calls.
CDEF = """
extern "Python" int32_t km_py_ready(void);
extern "Python" int32_t km_py_create(const char *config, size_t config_len,
                                     uint64_t *handle, char **error);
extern "Python" int32_t km_py_call(uint64_t handle, int32_t op, uint32_t timeout_ms,
                                   const char *request_id, const char *key_id,
                                   const uint8_t *in, size_t in_len,
                                   uint8_t **out, size_t *out_len, char **error);
extern "Python" void km_py_destroy(uint64_t handle);

int km_pyembed_set_bytes(uint8_t **out, size_t *out_len, const char *data, size_t n);
int km_pyembed_set_error(char **error, const char *message);
int km_pyembed_has_log(void);
const char *km_pyembed_self_dir(void);
int32_t km_pyembed_log_level(void);
void km_pyembed_log(int32_t level, const char *request_id, const char *message);
"""

INIT_CODE = """
import os, sys
from {module} import ffi, lib
_here = os.fsdecode(ffi.string(lib.km_pyembed_self_dir()))
_baked = [os.path.normpath(os.path.join(_here, _p)) for _p in {paths!r}]
_extra = [p for p in os.environ.get("KM_PYEMBED_PATH", "").split(os.pathsep) if p]
for _p in reversed(_extra + _baked):
    if _p not in sys.path:
        sys.path.insert(0, _p)
import km_pyembed.runtime
km_pyembed.runtime.bind(ffi, lib, {spec!r})
"""


class DeclarationError(Exception):
    pass


def load_declaration(path: Path) -> dict:
    """Read and check plugin.toml; raise DeclarationError with one line."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeclarationError(f"{path}: {exc}") from None
    spec = {}
    for key in ("plugin", "version", "manager", "class"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise DeclarationError(f"{path}: '{key}' must be a non-empty string")
        spec[key] = value
    for key in ("plugin", "manager"):
        if not NAME_RE.match(spec[key]):
            raise DeclarationError(f"{path}: '{key}' must match {NAME_RE.pattern}")
    if not TARGET_RE.match(spec["class"]):
        raise DeclarationError(f"{path}: 'class' must be 'module:Class'")
    caps = data.get("capabilities", [])
    if not isinstance(caps, list) or not caps or any(c not in CAPABILITY_BITS for c in caps):
        raise DeclarationError(f"{path}: 'capabilities' must list some of {sorted(CAPABILITY_BITS)}")
    spec["capabilities"] = sorted(set(caps), key=list(CAPABILITY_BITS).index)
    if "kem" in caps and "unwrap" not in caps:  # KM_CAP_KEM is a promise about unwrap
        raise DeclarationError(f"{path}: capability 'kem' needs 'unwrap'")
    thread_safe = data.get("thread_safe", False)
    if not isinstance(thread_safe, bool):
        raise DeclarationError(f"{path}: 'thread_safe' must be true or false")
    spec["thread_safe"] = thread_safe
    dirs = data.get("python_path", ["."])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise DeclarationError(f"{path}: 'python_path' must be a list of directories")
    spec["python_path"] = [str((path.parent / d).resolve()) for d in dirs]
    unknown = set(data) - {"plugin", "version", "manager", "class", "capabilities", "thread_safe", "python_path"}
    if unknown:
        raise DeclarationError(f"{path}: unknown keys {sorted(unknown)}")
    return spec


def c_string(text: str) -> str:
    """A C string literal for any text (paths may hold quotes or non-ASCII)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 0x20 <= byte < 0x7F and ch not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_source(spec: dict) -> str:
    caps = sum(CAPABILITY_BITS[c] for c in spec["capabilities"])
    if spec["thread_safe"]:
        caps |= THREAD_SAFE_BIT
    defines = {
        "KM_PYEMBED_PLUGIN_NAME": c_string(spec["plugin"]),
        "KM_PYEMBED_PLUGIN_VERSION": c_string(spec["version"]),
        "KM_PYEMBED_MANAGER_NAME": c_string(spec["manager"]),
        "KM_PYEMBED_CAPABILITIES": str(caps),
        # last resort of a plain C host when no venv is found around the .so (adapter.c)
        "KM_PYEMBED_BUILD_PYTHON": c_string(os.path.abspath(sys.executable)),
    }
    for cap in CAPABILITY_BITS:
        defines[f"KM_PYEMBED_HAS_{cap.upper()}"] = "1" if cap in spec["capabilities"] else "0"
    head = "".join(f"#define {k} {v}\n" for k, v in defines.items())
    return head + (HERE / "adapter.c").read_text(encoding="utf-8")


def relative_to(so: Path, dirs: list[str]) -> list[str]:
    """dirs as seen from the directory the .so is written to (resolved again at load time)."""
    base = so.parent.resolve()
    return [os.path.relpath(d, base) for d in dirs]


def build(declaration: Path, out: Path, tmpdir: Path, verbose: bool = False) -> Path:
    import cffi  # imported here so --help works without the venv

    spec = load_declaration(declaration)
    expected = f"{spec['manager']}-manager.so"
    if out.name != expected:
        raise DeclarationError(f"{declaration}: output must be named {expected}, not {out.name}")
    module = "_km_pyembed_" + re.sub(r"\W", "_", spec["manager"])
    runtime_spec = {k: spec[k] for k in ("plugin", "version", "manager", "class", "capabilities", "thread_safe")}

    ffi = cffi.FFI()
    ffi.embedding_api("")
    ffi.cdef(CDEF)
    ffi.embedding_init_code(
        INIT_CODE.format(paths=relative_to(out, [str(HERE), *spec["python_path"]]), module=module,
                         spec=runtime_spec)
    )
    libdir = sysconfig.get_config_var("LIBDIR")
    tmpdir.mkdir(parents=True, exist_ok=True)
    version_script = tmpdir.resolve() / "exports.map"
    version_script.write_text("{ global: km_plugin_init; local: *; };\n", encoding="utf-8")
    ffi.set_source(
        module,
        c_source(spec),
        include_dirs=[str(HEADER_DIR)],
        extra_compile_args=["-O2", "-g", "-fvisibility=hidden", "-Wall"],
        extra_link_args=[f"-Wl,--version-script={version_script}", f"-Wl,-rpath,{libdir}"],
        library_dirs=[libdir],
    )
    built = Path(ffi.compile(tmpdir=str(tmpdir), target=expected, verbose=verbose))
    out.parent.mkdir(parents=True, exist_ok=True)
    # Copy then rename: a process that has the old .so mapped keeps working.
    staging = out.with_name(out.name + ".tmp")
    shutil.copyfile(built, staging)
    os.replace(staging, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("declaration", type=Path, help="the plugin's plugin.toml")
    parser.add_argument("--out", type=Path, required=True, help="build/plugins/<manager>-manager.so")
    parser.add_argument("--tmpdir", type=Path, help="where the generated C and objects go")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    tmpdir = args.tmpdir or args.out.parent / ".pyembed" / args.out.stem
    try:
        out = build(args.declaration, args.out, tmpdir, args.verbose)
    except DeclarationError as exc:
        print(f"pyembed: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # compiler/link failures: cffi's message names the step
        print(f"pyembed: building {args.out} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.verbose:
        print(f"pyembed: built {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
