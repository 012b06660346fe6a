"""The quickstart's `make`: the Python it needs, a .venv it rebuilds, the port it serves on.

The Makefile runs here in a copy of the project's make files, with fake
Pythons (shell scripts) standing for the ones a developer may have.
"""
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conf.settings import PROJECT_ROOT
from tests.helpers import free_port, isolated_environment, wait_for

# A fake Python: its version, whether it has venv, and what `-m venv DIR` builds.
FAKE_PYTHON = """#!/bin/sh
case "$*" in
    *version_info*) echo {version} ;;
    *ensurepip*) exit {venv_missing} ;;
    "-m venv "*) mkdir -p "$3/bin"
                 cp "$0" "$3/bin/python"
                 printf '#!/bin/sh\\necho "$@" >> "%s"\\n' "$PWD/pip-calls" > "$3/bin/pip"
                 chmod +x "$3/bin/pip" ;;
esac
"""


def fake_python(folder: Path, version: str, venv_missing: bool = False) -> Path:
    path = folder / f"python{version}"
    path.write_text(FAKE_PYTHON.format(version=version, venv_missing=int(venv_missing)))
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    """A folder holding the project's Makefile, its Python check and (empty) lock files."""
    if shutil.which("make") is None:  # e.g. in the development container
        pytest.skip("make is not installed: apt-get install make")
    (tmp_path / "scripts").mkdir()
    shutil.copy(PROJECT_ROOT / "Makefile", tmp_path)
    shutil.copy(PROJECT_ROOT / "scripts" / "check-python.sh", tmp_path / "scripts")
    for lock in ("requirements.lock", "requirements-dev.lock"):
        (tmp_path / lock).write_text("")
    return tmp_path


def make(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(project), *args],
                          capture_output=True, text=True, timeout=60)


def test_an_older_python_is_refused_with_what_to_do(project):
    result = make(project, "install", f"PYTHON={fake_python(project, '3.9')}")
    assert result.returncode != 0
    assert (f"make: '{project}/python3.9' is Python 3.9; this project needs 3.11 or newer. "
            "Install one, or name it: make run PYTHON=python3.11") in result.stderr
    assert not (project / ".venv").exists()


def test_a_missing_python_is_named(project):
    result = make(project, "install", "PYTHON=no-such-python3")
    assert result.returncode != 0
    assert ("make: cannot run 'no-such-python3': install Python 3.11 or newer, or name one: "
            "make run PYTHON=python3.12") in result.stderr


def test_a_python_without_venv_names_the_debian_package(project):
    python = fake_python(project, "3.11", venv_missing=True)
    result = make(project, "install", f"PYTHON={python}")
    assert result.returncode != 0
    assert "sudo apt install python3-venv (or python3.11-venv)" in result.stderr
    assert not (project / ".venv").exists()


def test_a_venv_built_by_another_python_is_rebuilt(project):
    (project / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(fake_python(project, "3.9"), project / ".venv" / "bin" / "python")
    (project / ".venv" / "stale").write_text("")
    result = make(project, "install", f"PYTHON={fake_python(project, '3.12')}")
    assert result.returncode == 0, result.stderr
    assert (f"make: rebuilding .venv: Python 3.9 built it, not {project}/python3.12 (3.12)"
            in result.stderr)
    assert not (project / ".venv" / "stale").exists()
    assert "--require-hashes" in (project / "pip-calls").read_text()
    assert (project / ".venv" / ".installed").exists()


def test_naming_another_python_rebuilds_a_finished_venv(project):
    first, second = fake_python(project, "3.11"), fake_python(project, "3.12")
    assert make(project, "install", f"PYTHON={first}").returncode == 0
    again = make(project, "install", f"PYTHON={first}")
    assert "Nothing to be done" in again.stdout, "the same Python keeps it"
    result = make(project, "install", f"PYTHON={second}")
    assert result.returncode == 0, result.stderr
    assert f"make: rebuilding .venv: Python 3.11 built it, not {second} (3.12)" in result.stderr
    assert (project / ".venv" / ".installed").read_text().strip() == "3.12"


def test_a_half_built_venv_is_rebuilt_and_a_good_one_kept(project):
    python = fake_python(project, "3.11")
    (project / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(python, project / ".venv" / "bin" / "python")
    result = make(project, "install", f"PYTHON={python}")
    assert result.returncode == 0, result.stderr
    assert "it has no pip (an earlier build stopped half-way)" in result.stderr
    (project / ".venv" / "kept").write_text("")
    (project / ".venv" / ".installed").unlink()
    result = make(project, "install", f"PYTHON={python}")
    assert result.returncode == 0 and "rebuilding" not in result.stderr
    assert (project / ".venv" / "kept").exists()


def test_run_serves_on_5000_or_the_port_given(project, monkeypatch):
    monkeypatch.setenv("PORT", "8000")  # gunicorn's setting must not move the dev server
    (project / ".venv").mkdir()
    (project / ".venv" / ".installed").write_text("")
    default = make(project, "-n", "run").stdout
    assert "flask --app app run --host 127.0.0.1 --port 5000" in default
    assert "--sample-if-no-key" in default
    chosen = make(project, "-n", "run", "PORT=8081").stdout
    assert "flask --app app run --host 127.0.0.1 --port 8081" in chosen
    assert "http://127.0.0.1:8081/api/docs" in chosen


def test_the_development_server_logs_each_request_once_without_colour_codes(
        sqlite_database_url, tmp_path):
    port = free_port()
    env = isolated_environment(APP_ENV="development", DATABASE_URL=sqlite_database_url,
                               LOG_DIR=str(tmp_path / "log"), FLASK_SKIP_DOTENV="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "run", "--host", "127.0.0.1",
         "--port", str(port)], cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/api/health"), "the dev server")
        _answers(f"http://127.0.0.1:{port}/api/nothing")
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    log = (tmp_path / "log" / "api.log").read_text()
    assert log.count("GET /api/nothing 404") == 1 and err.count("GET /api/nothing 404") == 1
    assert "Press CTRL+C to quit" in log
    assert "\x1b" not in log + err and "\\x1b" not in log + err


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
