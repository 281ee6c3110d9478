"""A Python-embedded plugin finds its sources and interpreter relative to where it is installed.

The echo plugin is built inside a throw-away tree (its own copy of plugins/_pyembed,
the plugin's sources and a `.venv` beside `build/`, as in a checkout), then the whole
tree is moved: the build-time paths no longer exist, and a plain C host (dlopen
RTLD_LOCAL, no Python environment) must still start Python from the moved venv and
import the plugin's sources from their new place. A .so moved away from any venv
needs the one override, KM_PYEMBED_PYTHON, and says so when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from host.abi import INCLUDE_DIR

REPO = Path(__file__).resolve().parents[2]
ECHO_DIR = REPO / "tests" / "plugins" / "echo_plugin"
SO = Path("build/plugins/echo-test-manager.so")
CONFIG = json.dumps({"secret": "relocation-secret-3f9a"})
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def _make_tree(root: Path) -> None:
    """root/{include, plugins/_pyembed, plugins/echo, .venv}: a minimal checkout."""
    shutil.copytree(REPO / "include", root / "include")
    shutil.copytree(REPO / "plugins" / "_pyembed", root / "plugins" / "_pyembed", ignore=IGNORE)
    shutil.copytree(ECHO_DIR, root / "plugins" / "echo", ignore=IGNORE)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    # The tree's venv sees the project venv's packages (cffi for the build), through a .pth file.
    purelib = Path(sysconfig.get_paths(vars={"base": str(root / ".venv")})["purelib"])
    (purelib / "project.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def _build(root: Path) -> None:
    python = root / ".venv" / "bin" / "python"
    proc = subprocess.run([str(python), "plugins/_pyembed/build.py", "plugins/echo/plugin.toml",
                           "--out", str(SO), "--tmpdir", "build/pyembed/echo-test"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def c_host(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("c_host") / "c_host"
    subprocess.run(["gcc", "-O2", "-Wall", "-std=c11", f"-I{INCLUDE_DIR}", "-o", str(exe),
                    str(ECHO_DIR / "c_host.c"), "-ldl", "-lpthread"], check=True)
    return exe


def _run(c_host: Path, so: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(c_host), str(so), CONFIG, "2", "5"], cwd="/", capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=120)


def test_moved_tree_finds_its_venv_and_sources(tmp_path, c_host):
    built, moved = tmp_path / "built", tmp_path / "moved"
    _make_tree(built)
    _build(built)
    os.rename(built, moved)
    assert not built.exists()  # neither the build interpreter nor the baked source dirs exist any more

    proc = _run(c_host, moved / SO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok 10"
    assert "echo-test: echo manager created" in proc.stderr


def test_plugin_away_from_any_venv_needs_km_pyembed_python(tmp_path, c_host):
    built, moved = tmp_path / "built", tmp_path / "moved"
    _make_tree(built)
    _build(built)
    os.rename(built, moved)
    venv = moved / ".venv"
    shutil.rmtree(venv)  # the tree keeps its sources but no interpreter

    proc = _run(c_host, moved / SO)
    assert proc.stdout.strip() == "init NULL"
    assert "set KM_PYEMBED_PYTHON" in proc.stderr

    proc = _run(c_host, moved / SO, KM_PYEMBED_PYTHON=str(REPO / ".venv" / "bin" / "python"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok 10"
