"""Every shell script in the repository parses, passes shellcheck (warnings and errors) and, when it has a shebang,
is executable.

Most of them (bench, soak, fuzz, sanitizers, the demo's `deploy/run.sh`) are run by hand or by the bench kit, not by
the test command: this keeps a slip in one of them from waiting for the next person who runs it.

Run: pytest -q Tests/deploy/test_scripts.py   (Tests/run-all.sh installs shellcheck)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".build", ".build-static", ".build-fuzz", ".build-venv", "checkouts", "node_modules"}


def shell_scripts() -> list[Path]:
    found = [ROOT / ".ci" / "run"]
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".build")]
        found += [Path(dirpath) / f for f in filenames if f.endswith(".sh")]
    return sorted(found)


SCRIPTS = shell_scripts()


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_scripts_are_found():
    names = {rel(p) for p in SCRIPTS}
    for expected in [".ci/run", "Tests/run-all.sh", "deploy/run.sh", "Tests/bench/run.sh", "Tests/bench/cpu-split.sh",
                     "Tests/fuzz/run.sh", "Tests/soak/soak.sh", "Tests/sanitizers/run.sh"]:
        assert expected in names


@pytest.mark.parametrize("script", SCRIPTS, ids=rel)
def test_bash_parses(script: Path):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=rel)
def test_executable_when_it_has_a_shebang(script: Path):
    if script.read_text().startswith("#!"):
        assert os.access(script, os.X_OK), f"{rel(script)} has a shebang but is not executable"


def shellcheck(*paths: Path) -> subprocess.CompletedProcess:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Tests/run-all.sh installs it)")
    return subprocess.run(["shellcheck", "-S", "warning", "-x", *map(str, paths)], capture_output=True, text=True,
                          cwd=ROOT)


def test_shellcheck_clean():
    result = shellcheck(*SCRIPTS)
    assert result.returncode == 0, result.stdout


def test_the_checks_catch_a_broken_script(tmp_path: Path):
    """The checks above can fail: a syntax error fails `bash -n`, an unchecked `cd` fails shellcheck."""
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/usr/bin/env bash\nif then fi\n")
    assert subprocess.run(["bash", "-n", str(broken)], capture_output=True).returncode != 0
    careless = tmp_path / "careless.sh"
    careless.write_text('#!/usr/bin/env bash\ncd "$1"\nrm -f ./*.tmp\n')
    result = shellcheck(careless)
    assert result.returncode != 0 and "SC2164" in result.stdout
