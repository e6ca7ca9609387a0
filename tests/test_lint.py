"""The code passes ruff with the project's rules (pyproject.toml), so that CI keeps it so."""
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _ruff() -> str:
    beside = Path(sys.executable).with_name("ruff")
    found = str(beside) if beside.exists() else shutil.which("ruff")
    assert found, "ruff is a test dependency: pip install -e '.[test]'"
    return found


def test_ruff_finds_nothing():
    result = subprocess.run([_ruff(), "check", "--no-cache", "elasticcluster", "drivers", "tests", "bench"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
