"""README.rst opens with the two commands, and .ci/run runs its test command verbatim."""
import re

from tests.conftest import REPO


def _literal_after(text: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}::\n\n    (.+)$", text, re.M)
    assert match, f"README.rst has no '{label}::' block"
    return match.group(1).strip()


def test_readme_opens_with_run_and_test_commands():
    text = (REPO / "README.rst").read_text()
    head = text[:1500]
    assert "Run it::" in head and "Run the whole test suite::" in head
    assert "elasticcluster" in _literal_after(text, "Run it")
    assert "pytest" in _literal_after(text, "Run the whole test suite")


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.rst").read_text()
    command = _literal_after(readme, "Run the whole test suite")
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    test_lines = [line for line in ci_lines if "pytest" in line and not line.startswith("#")]
    assert len(test_lines) == 1, "one test command in .ci/run"
    assert command.endswith(test_lines[0]), "the README's test command ends with .ci/run's"
