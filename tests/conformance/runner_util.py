"""Helpers for the km-conformance tests: build things, run the runner, read its output."""

from __future__ import annotations

import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.make import make, make_or_fail  # noqa: F401  (the conformance tests import them from here)

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
RUNNER = BUILD / "km-conformance"
PLUGIN_DIR = BUILD / "plugins"
TOY_SRC = Path(__file__).parent / "toy_plugin.c"
TOY_RSA_SRC = Path(__file__).parent / "toy_rsa_plugin.c"
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")


def compile_plugin(source: Path, out: Path, *defines: str, sanitize: bool = False, libs: tuple = ()) -> Path:
    args = ["gcc", "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
            "-fvisibility=hidden", f"-I{ROOT / 'include'}", *[f"-D{d}" for d in defines],
            *(SANITIZE_FLAGS if sanitize else []), str(source), "-o", str(out), *libs]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"compiling {source.name} failed:\n{result.stderr}")
    return out


def asan_available(tmp: Path) -> bool:
    """True when the C compiler can build and run an ASan+UBSan program."""
    src = tmp / "asan_probe.c"
    src.write_text("int main(void) { return 0; }\n")
    exe = tmp / "asan_probe"
    built = subprocess.run(["gcc", *SANITIZE_FLAGS, str(src), "-o", str(exe)], capture_output=True)
    return built.returncode == 0 and subprocess.run([str(exe)], capture_output=True).returncode == 0


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def summary(self) -> tuple[int, int]:
        assert self.lines, f"runner printed nothing; stderr:\n{self.stderr}"
        m = SUMMARY.match(self.lines[-1])
        assert m, f"last line is not the summary: {self.lines[-1]!r}"
        return int(m.group(1)), int(m.group(2))

    def failed(self) -> list[str]:
        return [line for line in self.lines if line.startswith("FAIL ")]

    def line(self, prefix: str) -> str:
        found = [line for line in self.lines if line.startswith(prefix)]
        assert found, f"no line starting with {prefix!r} in:\n{self.stdout}"
        return found[0]

    def text(self) -> str:
        return self.stdout + self.stderr


def run_runner(*args: str | Path, stdin: str | None = None, runner: Path = RUNNER) -> RunResult:
    proc = subprocess.run([str(runner), *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=300)
    # A negative code means the runner died on a signal: never acceptable.
    assert proc.returncode >= 0, f"runner killed by signal {-proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return RunResult(proc.returncode, proc.stdout, proc.stderr)


def random_kek() -> str:
    return secrets.token_hex(32)
