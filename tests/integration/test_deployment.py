"""The Docker deployment files, checked without a Docker engine.

The Dockerfile and compose files are linted, validated against the compose
spec and cross-checked against the project; the image's entrypoint and
gunicorn command then run as the image would run them, on this machine.
"""
import contextlib
import http.client
import json
import os
import re
import runpy
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import import_module, metadata
from pathlib import Path
from types import FunctionType, ModuleType
from urllib.parse import unquote, urlsplit

import pytest
import redis
from gunicorn.config import KNOWN_SETTINGS
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from ruamel.yaml import YAML
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from app.routes import PAGINATED_PATHS
from app.security import SECURITY_HEADERS
from lib.locks import MIGRATION_LOCK, lock_name
from scripts.benchmark import PROJECT_PACKAGES
from tests.deployment import (
    DOCKERFILE, ENV_EXAMPLE, ROOT, deploy_environment, dockerfile_stages, env_example_names,
    healthcheck_command, image_command, inherited, instruction, settings_env_names,
)
from tests.helpers import free_port, get_config
from tests.servers import stalling_proxy

GUNICORN_CONF = ROOT / "conf" / "gunicorn.conf.py"
COMPOSE_FILES = ("docker-compose.prod.yml", "docker-compose.dev.yml")
# Files the deployment reads environment variables in (besides conf/settings.py).
DEPLOY_ENV_READERS = ("conf/gunicorn.conf.py", "scripts/docker-entrypoint.sh",
                      "scripts/healthcheck.py")
SERVER_START_SECONDS = 30
TEST_MYSQL_URL = os.environ.get("TEST_MYSQL_URL")


# --- helpers: reading the deployment files -------------------------------------------

def tool(name: str) -> str:
    """Return the path of a dev tool: next to this Python first, else on PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found; install requirements-dev.txt")
    return found


def load_compose(name: str) -> dict:
    with open(ROOT / name, encoding="utf-8") as stream:
        return YAML(typ="safe", pure=True).load(stream)


def app_services(compose: dict) -> dict[str, dict]:
    """Return the services built from this project's Dockerfile."""
    return {name: service for name, service in compose["services"].items()
            if isinstance(service.get("build"), dict) and service["build"]["context"] == "."}


def deploy_env_names() -> set[str]:
    names = set()
    for relative in DEPLOY_ENV_READERS:
        source = (ROOT / relative).read_text(encoding="utf-8")
        names |= set(re.findall(r"(?:_env|_env_int|environ\.get)\(\s*[\"']([A-Z][A-Z0-9_]*)",
                                source))
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", source))
    return names - SET_BY_THE_DEPLOYMENT


# Read where they are set, never by an operator: gunicorn.conf.py tells its
# workers (and its own exit, after a reload) where the metrics folder is.
SET_BY_THE_DEPLOYMENT = {"PROMETHEUS_MULTIPROC_DIR"}


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _glob_regex(glob: str) -> re.Pattern:
    """Translate a .dockerignore glob (Go filepath.Match plus **) to a regex."""
    tokens = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    regex, i = "", 0
    while i < len(glob):
        token = next((t for t in tokens if glob.startswith(t, i)), None)
        if token:
            regex, i = regex + tokens[token], i + len(token)
        elif glob[i] == "[":
            end = glob.index("]", i)
            regex, i = regex + glob[i:end + 1], end + 1
        else:
            regex, i = regex + re.escape(glob[i]), i + 1
    return re.compile(regex)


def is_dockerignored(path: str) -> bool:
    """Tell whether Docker leaves ``path`` out of the build context (last match wins)."""
    prefixes = ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 2)]
    ignored = False
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


# --- 1. and 2.: linters ------------------------------------------------------------

def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run([tool("hadolint"), "--no-color", str(DOCKERFILE)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_ignores_come_with_a_reason():
    config = ROOT / ".hadolint.yaml"
    lines = config.read_text(encoding="utf-8").splitlines() if config.exists() else []
    for number, line in enumerate(lines):
        if re.match(r"\s*-\s*(DL|SC)\d+", line):
            assert "#" in line or lines[number - 1].strip().startswith("#"), line


def test_hosted_ci_workflow_follows_the_published_schema():
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
         ".github/workflows/ci.yml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hosted_ci_runs_the_readme_test_command_and_a_compose_smoke_test():
    workflow = YAML(typ="safe").load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    test_job, image_job = workflow["jobs"]["test"], workflow["jobs"]["image"]
    assert {"mariadb", "redis"} <= set(test_job["services"])
    commands = " ".join(step.get("run", "") for step in image_job["steps"])
    for expected in ("$COMPOSE build", "up --detach --wait", "/api/health", "/api/financial_data"):
        assert expected in commands
    secrets = load_compose("docker-compose.prod.yml")["secrets"].values()
    for path in [secret["file"].removeprefix("./") for secret in secrets]:
        assert f"> {path}" in commands, f"the smoke test creates no {path}"


def test_hosted_ci_fails_on_a_skipped_test_with_the_check_ci_run_uses():
    workflow = YAML(typ="safe").load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    hosted = [step["run"].splitlines() for step in workflow["jobs"]["test"]["steps"]
              if "make test" in step.get("run", "")]
    assert hosted == [['make test PYTEST_ARGS="--junitxml=$RUNNER_TEMP/junit.xml"',
                       'python3 .ci/check-no-skips.py "$RUNNER_TEMP/junit.xml"']]
    ci_run = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci_run[-3:] == ['make test PYTEST_ARGS="--junitxml=$report"', "",
                           'python3 .ci/check-no-skips.py "$report"']


# A JUnit report (pytest --junitxml) where one test of each kind CI insists on ran.
JUNIT_REPORT = """<testsuites><testsuite>
<testcase classname="tests.functional.test_store" name="test_upsert[mysql]"/>
<testcase classname="tests.integration.test_cache" name="test_shared[redis]"/>
<testcase classname="tests.browser.test_dashboard" name="test_chart"/>
{extra}</testsuite></testsuites>"""
SKIPPED_CASE = ('<testcase classname="tests.unit.test_x" name="test_y">'
                '<skipped message="no nginx"/></testcase>')


def check_no_skips(tmp_path, report: str) -> subprocess.CompletedProcess:
    (tmp_path / "junit.xml").write_text(report)
    return subprocess.run([sys.executable, ".ci/check-no-skips.py", str(tmp_path / "junit.xml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_ci_skip_check_passes_a_run_where_every_test_ran(tmp_path):
    result = check_no_skips(tmp_path, JUNIT_REPORT.format(extra=""))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "ci: 1 MariaDB-backed, 1 Redis-backed and 1 browser tests ran\n"


def test_the_ci_skip_check_fails_naming_a_skipped_test(tmp_path):
    result = check_no_skips(tmp_path, JUNIT_REPORT.format(extra=SKIPPED_CASE))
    assert result.returncode == 1
    assert result.stderr == ("ci: every test must run here; skipped:\n"
                             "  tests.unit.test_x::test_y: no nginx\n")


def test_the_ci_skip_check_fails_when_no_mariadb_test_ran(tmp_path):
    result = check_no_skips(tmp_path, JUNIT_REPORT.format(extra="").replace("[mysql]", "[sqlite]"))
    assert result.returncode == 1
    assert result.stderr == "ci: the MariaDB-backed, Redis-backed or browser tests did not run\n"


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_compose_file_follows_the_compose_spec(compose_file):
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", compose_file],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- 3.: what the files reference exists --------------------------------------------

def test_dockerfile_copies_only_what_exists_in_the_build_context():
    for stage in dockerfile_stages().values():
        for keyword, arguments in stage:
            if keyword != "COPY" or arguments.startswith("--from="):
                continue
            for source in [arg for arg in arguments.split()[:-1] if not arg.startswith("--")]:
                assert (ROOT / source).exists(), f"COPY {source}: missing"
                if source != ".":
                    assert not is_dockerignored(source.rstrip("/")), f"COPY {source}: ignored"


def test_the_benchmark_compiles_what_the_image_compiles():
    """The fetch job's timed runs read compiled modules, as in the image, not compiling any."""
    copied = {arguments.split()[0].rstrip("/")
              for keyword, arguments in dockerfile_stages()["final"]
              if keyword == "COPY" and not arguments.startswith("--")}
    packages = {source for source in copied
                if (ROOT / source).is_dir() and any((ROOT / source).rglob("*.py"))}
    assert packages == set(PROJECT_PACKAGES)


@pytest.mark.parametrize("path", [
    ".env", ".venv/bin/python", "secrets/db_password.txt", "data/streaming/financial.db",
    "data/log/api.log", "data/log/get_raw_data.log", ".git/HEAD", "app/__pycache__/x.pyc",
    "test-artifacts/browser/dashboard.png", ".env.production", ".envrc", "deploy/.env",
    "deploy/.env.local", "old-copy/secrets/alphavantage_api_key.txt", ".schemathesis/default",
    "financial.sql", "financial-backup.db",
])
def test_dockerignore_keeps_secrets_and_local_state_out(path):
    assert is_dockerignored(path)


@pytest.mark.parametrize("path", [
    "get_raw_data.py", "app/__init__.py", "migrations/env.py", "scripts/docker-entrypoint.sh",
    "requirements.txt", "requirements-dev.txt", "requirements.lock", "requirements-dev.lock",
    "setup.cfg", "data/fixtures", "app/templates/dashboard.html", "app/static/dashboard/main.js",
    "app/static/vendor/lightweight-charts/LICENSE",
])
def test_dockerignore_keeps_the_code_in(path):
    assert (ROOT / path).exists() and not is_dockerignored(path)


def test_production_image_is_linted_non_root_and_secret_free():
    stages = dockerfile_stages()
    final = stages["final"]
    copied_from = [arguments.split()[0].removeprefix("--from=") for keyword, arguments in final
                   if keyword == "COPY" and arguments.startswith("--from=")]
    assert any(keyword == "RUN" and "flake8" in arguments
               for name in copied_from for keyword, arguments in stages.get(name, []))
    assert instruction(final, "USER").split(":")[0] not in ("root", "0")
    for stage in stages.values():
        for keyword, arguments in stage:
            if keyword in ("ARG", "ENV"):
                assert not re.search(r"KEY|PASSWORD|SECRET|TOKEN", arguments, re.I), arguments


LOCKED = {"requirements.txt": "requirements.lock", "requirements-dev.txt": "requirements-dev.lock"}


def pins(path: Path) -> dict[str, str]:
    """Return {normalized name: version} of the ``name==version`` lines of a requirements file."""
    found = {}
    for match in re.finditer(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;\\]+)",
                             path.read_text(encoding="utf-8"), re.MULTILINE):
        found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


@pytest.mark.parametrize("listed, locked", LOCKED.items())
def test_lock_files_pin_what_the_requirement_files_list(listed, locked):
    wanted, pinned = pins(ROOT / listed), pins(ROOT / locked)
    assert {name: pinned.get(name) for name in wanted} == wanted, f"run `make lock` ({locked})"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / locked).read_text(encoding="utf-8"))
    assert all("--hash=sha256:" in block for block in blocks if "==" in block)


@pytest.mark.parametrize("locked", LOCKED.values())
@pytest.mark.parametrize("python_full_version", ["3.11.0", "3.11.2", "3.12.0"])
def test_lock_files_hold_every_dependency_of_each_supported_python(locked, python_full_version):
    # pip-compile keeps only what the Python running it needs: a dependency
    # under a marker such as redis's async-timeout (python_full_version <
    # "3.11.3") is left out by a newer 3.11, and the install on an older one
    # (Debian 12's python3 is 3.11.2) then fails at import.
    pinned = pins(ROOT / locked)
    python = {"python_full_version": python_full_version,
              "python_version": python_full_version.rsplit(".", 1)[0], "extra": ""}
    missing = set()
    for name in pinned:
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # pinned since this environment was installed
            continue
        for requirement in map(Requirement, requires):
            if requirement.marker is not None and requirement.marker.evaluate(python) \
                    and canonicalize_name(requirement.name) not in pinned:
                missing.add(f"{requirement.name} (for {name})")
    assert not missing, f"pin these in {next(k for k, v in LOCKED.items() if v == locked)}"


def test_the_dev_lock_installs_the_runtime_lock_unchanged():
    runtime, dev = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_images_install_only_hashed_locked_packages_and_ship_no_installer():
    stages = dockerfile_stages()
    installs = [arguments for stage in stages.values() for keyword, arguments in stage
                if keyword == "RUN" and "pip install" in arguments]
    assert installs
    for command in installs:
        assert "--require-hashes" in command and re.search(r"-r requirements[\w-]*\.lock",
                                                           command), command
    venv_source = [arguments.split()[0].removeprefix("--from=")
                   for keyword, arguments in stages["production"]
                   if keyword == "COPY" and "/opt/venv" in arguments]
    assert venv_source and any(
        keyword == "RUN" and re.search(r"pip uninstall --yes pip setuptools", arguments)
        for keyword, arguments in stages[venv_source[0]])
    # The base image's own Python keeps an installer too (pip, setuptools and
    # wheel in python:3.11), on the PATH: it leaves the production image as well.
    production = stages["production"]
    user_at = next(i for i, (keyword, _) in enumerate(production) if keyword == "USER")
    assert any(keyword == "RUN" and re.search(
        r"/usr/local/bin/python -m pip uninstall --yes pip setuptools wheel", arguments)
        for keyword, arguments in production[:user_at])


def image_python_environment() -> dict[str, str]:
    """Return the PYTHON* variables the production image's ENV sets, its parents' included."""
    stages, stage, found = dockerfile_stages(), dockerfile_stages()["final"], {}
    while stage is not None:
        for keyword, arguments in reversed(stage):
            if keyword == "ENV":
                pairs = dict(item.split("=", 1) for item in shlex.split(arguments))
                found = {**pairs, **found}
        stage = stages.get(stage[0][1].split()[0])
    return {name: value for name, value in found.items() if name.startswith("PYTHON")}


def lay_out_production_code(folder: Path) -> None:
    """Do in ``folder`` what the production stage does in its WORKDIR, in its order.

    Its COPYs from the build context (less what .dockerignore leaves out, mtimes
    kept as COPY keeps them) and its RUNs that compile that code, with this
    checkout's Python, as the image's ``python`` is the one that runs the code.
    """
    stages = dockerfile_stages()
    workdir = inherited(stages, stages["production"], "WORKDIR").rstrip("/")
    env = deploy_environment(**image_python_environment())
    for keyword, arguments in stages["production"]:
        if keyword == "COPY" and not arguments.startswith("--"):
            *sources, target = arguments.split()
            for source in sources:
                copy_from_context(source.rstrip("/"), folder / target)
        elif keyword == "RUN" and "compileall" in arguments and workdir in arguments:
            argv = shlex.split(arguments)
            assert not {"&&", "||", ";", "|"} & set(argv), arguments
            argv = [str(folder) + arg[len(workdir):] if arg.startswith(workdir) else arg
                    for arg in argv]
            subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)


def copy_from_context(source: str, target: Path) -> None:
    if (ROOT / source).is_file():
        shutil.copy2(ROOT / source, target / Path(source).name if target.is_dir() else target)
        return

    def ignored(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(ROOT)
        return {name for name in names if is_dockerignored((relative / name).as_posix())}
    shutil.copytree(ROOT / source, target, ignore=ignored, dirs_exist_ok=True)


# Load each file's code as an import does (without running it); -v says where from.
LOAD_CODE = """
import sys
from importlib.machinery import SourceFileLoader
for path in sys.argv[1:]:
    SourceFileLoader("module", path).get_code("module")
"""


def test_the_production_image_runs_its_code_from_bytecode_whatever_the_mtimes(tmp_path):
    """No process of the image compiles the project's modules at its start.

    The code is compiled as the image's build compiles it; its files' mtimes
    then change (another checkout's, or an export that rewrites them) and the
    image's Python, with the image's environment, still takes every module's
    code from its .pyc.
    """
    lay_out_production_code(tmp_path)
    sources = sorted(str(path) for path in tmp_path.rglob("*.py"))
    assert len(sources) > 50 and str(tmp_path / "get_raw_data.py") in sources
    for source in sources:
        os.utime(source, (946684800, 946684800))  # 2000-01-01
    result = subprocess.run(
        [sys.executable, "-v", "-c", LOAD_CODE, *sources], capture_output=True, text=True,
        env=deploy_environment(**image_python_environment()), timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = re.findall(r"^# \S+\.pyc matches (\S+\.py)$", result.stderr, re.MULTILINE)
    from_bytecode = {path for path in loaded if Path(path).is_relative_to(tmp_path)}
    assert from_bytecode == set(sources), sorted(set(sources) - from_bytecode)


def test_the_production_image_compiles_its_standard_library(tmp_path):
    """The base image's standard library comes without bytecode: the build compiles it.

    The build's command finds the library with the image's Python (here with
    this one) and compiles it so that Python then takes each module's code
    from its .pyc, as checked on a copy of one of the library's packages.
    """
    commands = [command for keyword, arguments in dockerfile_stages()["production"]
                if keyword == "RUN" for command in arguments.split(" && ")
                if "compileall" in command and "stdlib" in command]
    assert len(commands) == 1, commands
    compile_part, locate_part = re.fullmatch(r'(.+) "\$\((.+)\)"', commands[0]).groups()
    image_python, *compile_args = shlex.split(compile_part)
    located = subprocess.run(
        ["bash", "-c", locate_part.replace(image_python, shlex.quote(sys.executable))],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert (Path(located) / "os.py").is_file(), located
    package = tmp_path / "json"
    shutil.copytree(Path(located) / "json", package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = deploy_environment(**image_python_environment())
    subprocess.run([sys.executable, *compile_args, str(tmp_path)], env=env, check=True,
                   capture_output=True, timeout=120)
    sources = sorted(str(path) for path in package.glob("*.py"))
    result = subprocess.run([sys.executable, "-v", "-c", LOAD_CODE, *sources],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = re.findall(r"^# \S+\.pyc matches (\S+\.py)$", result.stderr, re.MULTILINE)
    assert len(sources) > 3 and set(loaded) >= set(sources), sorted(set(sources) - set(loaded))


def test_the_venv_keeps_the_bytecode_pip_compiles():
    """pip compiles what it installs unless told not to; the production venv keeps it."""
    stages = dockerfile_stages()
    for stage in stages.values():
        for keyword, arguments in stage:
            assert not (keyword == "RUN" and "pip install" in arguments
                        and "--no-compile" in arguments), arguments
            assert not (keyword == "ENV" and "PIP_NO_COMPILE" in arguments), arguments


def test_nginx_runs_a_stable_line():
    compose = YAML(typ="safe").load((ROOT / "docker-compose.prod.yml").read_text())
    minor = int(re.fullmatch(r"nginx:1\.(\d+)-alpine", compose["services"]["nginx"]["image"])
                .group(1))
    assert minor % 2 == 0 and minor >= 30, "nginx stable lines have an even minor version"


def test_image_command_and_healthcheck_point_at_real_files():
    entrypoint, *command = image_command()
    assert os.access(entrypoint, os.X_OK), f"{entrypoint} is not executable"
    assert (ROOT / command[command.index("--config") + 1]).is_file()
    module_name, _, factory = command[-1].partition(":")
    assert callable(getattr(import_module(module_name), factory.removesuffix("()")))
    assert Path(healthcheck_command()[-1]).is_file()


def test_docker_waits_longer_for_the_health_check_than_it_waits_for_the_api(monkeypatch):
    options = dict(re.findall(r"--([a-z-]+)=(\d+)s", instruction(
        dockerfile_stages()["final"], "HEALTHCHECK").split(" CMD ", 1)[0]))
    monkeypatch.delenv("DATABASE_TIMEOUT", raising=False)
    healthcheck = runpy.run_path(healthcheck_command()[-1])
    # It imports nothing of the app's: its default must be the app's own.
    assert healthcheck["DATABASE_TIMEOUT_DEFAULT"] == get_config().DATABASE_TIMEOUT
    patience = healthcheck["timeout_seconds"]()
    # A second for Python to start; a check ends before the next begins.
    assert patience + 1 <= int(options["timeout"]) <= int(options["interval"])


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_compose_files_reference_what_exists(compose_file):
    compose = load_compose(compose_file)
    stage_names = set(dockerfile_stages())
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["build"]["target"] in stage_names, name
            assert "args" not in service["build"], f"{name}: secrets go in secrets:, not args"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
        for script in [arg for arg in service.get("command", []) if arg.endswith(".py")]:
            assert (ROOT / script).is_file(), f"{name}: {script} missing"


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_a_scheduler_runs_the_fetch_job_from_the_api_image(compose_file):
    services = load_compose(compose_file)["services"]
    scheduler, api = services["scheduler"], services["api"]
    assert scheduler["command"][:3] == ["python", "get_raw_data.py", "--schedule"]
    assert (scheduler["image"], scheduler["build"]) == (api["image"], api["build"])
    assert scheduler["environment"]["DATABASE_URL"] == api["environment"]["DATABASE_URL"]
    assert scheduler["healthcheck"] == {"disable": True}, "it serves no HTTP to probe"


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_every_app_container_runs_under_an_init(compose_file):
    """The entrypoint's shell as PID 1 would drop a signal it has no trap for yet."""
    services = app_services(load_compose(compose_file))
    assert services and all(service.get("init") is True for service in services.values()), (
        sorted(name for name, service in services.items() if service.get("init") is not True))


def test_every_production_container_keeps_a_bounded_log():
    """Docker's json-file driver never rotates by default: request lines would fill the disk."""
    services = load_compose("docker-compose.prod.yml")["services"]
    unbounded = sorted(
        name for name, service in services.items()
        if service.get("logging", {}).get("driver") != "json-file"
        or not re.fullmatch(r"[1-9][0-9]*[kmg]", service["logging"]["options"].get("max-size", ""))
        or not service["logging"]["options"].get("max-file", "").isdigit())
    assert not unbounded, f"no rotated log: {unbounded}"


def test_the_production_scheduler_restarts_and_gets_the_key_as_a_secret():
    scheduler = load_compose("docker-compose.prod.yml")["services"]["scheduler"]
    assert scheduler["restart"] == "unless-stopped"
    assert "profiles" not in scheduler, "`up` starts it"
    assert "alphavantage_api_key" in scheduler["secrets"]
    assert scheduler["environment"]["ALPHAVANTAGE_API_KEY_FILE"] == (
        "/run/secrets/alphavantage_api_key")
    assert "ALPHAVANTAGE_API_KEY" not in scheduler["environment"]


def test_only_the_fetch_job_containers_get_the_key():
    """The API never uses the key: a container of it that is broken into must not hold it."""
    services = app_services(load_compose("docker-compose.prod.yml"))
    holding = {name for name, service in services.items()
               if "alphavantage_api_key" in service.get("secrets", [])
               or any(variable.startswith("ALPHAVANTAGE_API_KEY")
                      for variable in service.get("environment", {}))}
    assert holding == {"scheduler", "fetcher"}
    assert services["api"]["secrets"] == ["db_password", "redis_password"]
    for name in ("scheduler", "fetcher"):
        job, api = services[name]["environment"], services["api"]["environment"]
        assert {key: value for key, value in job.items()
                if key != "ALPHAVANTAGE_API_KEY_FILE"} == api, f"{name}: the API's settings"


def test_secrets_are_git_ignored_files_named_in_env_example():
    compose = load_compose("docker-compose.prod.yml")
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    env_example = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "secrets/" in gitignore
    for name, secret in compose["secrets"].items():
        path = Path(secret["file"])
        assert path.parts[0] == "secrets", name
        assert str(path) in env_example, f"{path} is not named in .env.example"
    for name, service in compose["services"].items():
        for variable, value in service.get("environment", {}).items():
            if variable.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in service["secrets"], f"{name}: {variable} has no secret"


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_app_environment_is_known_and_documented(compose_file):
    compose = load_compose(compose_file)
    documented = env_example_names()
    readers = settings_env_names() | deploy_env_names()
    conftest = (ROOT / "tests" / "conftest.py").read_text(encoding="utf-8")
    for name, service in app_services(compose).items():
        for variable, value in service["environment"].items():
            assert variable in readers or f'"{variable}"' in conftest, f"{name}: {variable}"
            host = urlsplit(str(value)).hostname if "://" in str(value) else None
            assert host is None or host in compose["services"], f"{name}: {variable} -> {host}"
    source = (ROOT / compose_file).read_text(encoding="utf-8")
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", source))
    assert interpolated - documented == set()


# Settings the production services do not take from .env: the key comes as a
# secret (ALPHAVANTAGE_API_KEY_FILE), the logs go to the image's own folder, and
# AlphaVantage's address is the real one.
NOT_PASSED_IN_PRODUCTION = {"ALPHAVANTAGE_API_KEY", "ALPHAVANTAGE_BASE_URL", "LOG_DIR"}


def test_production_services_pass_every_other_setting():
    """A setting in .env that compose does not pass would change nothing in production."""
    compose = load_compose("docker-compose.prod.yml")
    for name, service in app_services(compose).items():
        # The API is given no key: it never calls AlphaVantage.
        not_its_own = {"ALPHAVANTAGE_API_KEY_FILE"} if name == "api" else set()
        missing = (settings_env_names() - set(service["environment"]) - NOT_PASSED_IN_PRODUCTION
                   - not_its_own)
        assert missing == set(), name


def test_env_example_lists_every_variable_the_app_and_deployment_read():
    assert (settings_env_names() | deploy_env_names()) - env_example_names() == set()


def test_nginx_proxies_to_the_api_service_on_gunicorn_default_port():
    nginx = (ROOT / "conf" / "nginx.conf").read_text(encoding="utf-8")
    upstream = re.search(r"^\s*server\s+([\w.-]+):(\d+)", nginx, re.MULTILINE)
    assert upstream.groups() == ("api", "8000")
    assert "api" in load_compose("docker-compose.prod.yml")["services"]


def test_nginx_keeps_metrics_private_and_passes_request_ids():
    nginx = (ROOT / "conf" / "nginx.conf").read_text(encoding="utf-8")
    metrics = re.search(r"location = /metrics \{(.*?)\}", nginx, re.DOTALL)
    assert metrics and re.search(r"^\s*return 404;", metrics.group(1), re.MULTILINE)
    assert "proxy_pass" not in metrics.group(1)
    # "=" without a code: the page's own status (a 404, or the 414 of a URL over 4 KB).
    assert re.search(r"^\s*error_page 404 = /__nginx_error/404;", nginx, re.MULTILINE)
    assert re.search(r"proxy_set_header X-Request-ID \$api_request_id;", nginx)
    assert "request_id=$api_request_id" in nginx, "nginx's log line carries the same ID"
    assert re.search(r"^\s*server_tokens off;", nginx, re.MULTILINE)


def test_nginx_answers_its_own_errors_in_the_envelope_with_the_headers():
    nginx = (ROOT / "conf" / "nginx.conf").read_text(encoding="utf-8")
    # "=" without a code: the page's own status (a 503, or a preflight's 204).
    pages = re.findall(r"^\s*error_page ([\d ]+) =(\d*) ?(/__nginx_error/\d+);", nginx,
                       re.MULTILINE)
    assert {code for codes, _, _ in pages for code in codes.split()} >= {
        "400", "405", "413", "414", "494", "501", "502", "504"}
    bodies = dict(re.findall(r"^\s*(/__nginx_error/\d+) '(.*)';", nginx, re.MULTILINE))
    # Each body starts with the envelope's data (a list's, or any other path's).
    starts = re.search(r"map \$request_uri \$nginx_error_data \{(.*?)\n    \}", nginx,
                       re.DOTALL).group(1)
    shapes = re.findall(r"^\s*\S+ '(.*)';", starts, re.MULTILINE)
    assert [json.loads("{%s}" % shape) for shape in shapes] == [
        {"data": [], "pagination": None}, {"data": {}}]
    health = re.search(r"map \$request_uri \$nginx_unavailable_data \{(.*?)\n    \}", nginx,
                       re.DOTALL).group(1)
    [health_shape] = re.findall(r"^\s*\S+ '(.*)';", health, re.MULTILINE)
    for _, _, name in pages:
        for shape in [*shapes, health_shape]:
            body = json.loads(bodies[name].replace("$nginx_error_data", shape)
                              .replace("$nginx_unavailable_data", shape))
            assert list(body)[-1] == "info" and body["info"]["error"], name
    block = re.search(r"location /__nginx_error/ \{(.*?)\n        \}", nginx, re.DOTALL).group(1)
    assert re.search(r"^\s*internal;", block, re.MULTILINE)
    assert re.search(r"^\s*return 200 \$nginx_error_body;", block, re.MULTILINE)
    for header in [*SECURITY_HEADERS, "X-Request-ID"]:
        assert re.search(rf"add_header {header} .* always;", block), header
    gunicorn = runpy.run_path(str(GUNICORN_CONF))
    over = re.search(r'map \$request \$nginx_url_too_long \{\s*"~\^\.\{(\d+)\}" 1;',
                     nginx).group(1)
    assert int(over) - 1 < gunicorn["limit_request_line"], "nginx must refuse first"
    count, size = re.search(r"large_client_header_buffers (\d+) (\d+)k;", nginx).groups()
    # X-Forwarded-For may hold every header line nginx reads (joined), beyond its first 1 KB.
    headers = (int(count) * int(size) + 1) * 1024
    assert headers < gunicorn["limit_request_field_size"], "nginx must refuse first"
    assert gunicorn["limit_request_fields"] * len("a:\r\n") >= headers, "nginx must refuse first"


def test_nginx_gets_the_apis_cors_origins_and_no_other_variable():
    """The image's entrypoint fills the template's variables named by the filter (envsubst)."""
    services = load_compose("docker-compose.prod.yml")["services"]
    nginx = services["nginx"]
    assert nginx["volumes"] == ["./conf/nginx.conf:/etc/nginx/templates/nginx.conf.template:ro"]
    environment = nginx["environment"]
    assert environment["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    assert environment["CORS_ORIGINS"] == services["api"]["environment"]["CORS_ORIGINS"]
    assert [name for name in environment
            if re.search(environment["NGINX_ENVSUBST_FILTER"], name)] == ["CORS_ORIGINS"]
    template = (ROOT / "conf" / "nginx.conf").read_text(encoding="utf-8")
    assert re.findall(r"\$\{?CORS_ORIGINS\b\}?", template) == ["${CORS_ORIGINS}"]


def escaped_variants(path: str) -> list[str]:
    """Return ``path`` with each of its characters after the first %-escaped in turn,
    in upper and lower case hex, as a client may send it."""
    variants = []
    for index in range(1, len(path)):
        for escape in {"%%%02X" % ord(path[index]), "%%%02x" % ord(path[index])}:
            variants.append(path[:index] + escape + path[index + 1:])
    return variants


def test_nginx_picks_a_lists_error_envelope_by_the_path_the_api_decodes():
    """The API %-decodes the path, %2F included, and strips trailing slashes (app/errors.py);
    nginx's map must agree on every spelling of every path, a list's or not."""
    nginx = (ROOT / "conf" / "nginx.conf").read_text(encoding="utf-8")
    starts = re.search(r"map \$request_uri \$nginx_error_data \{(.*?)\n    \}", nginx,
                       re.DOTALL).group(1)
    pattern = re.compile(re.search(r'^\s*"~(.*)" \'"data": \[\]', starts, re.MULTILINE).group(1))
    paths = [*PAGINATED_PATHS, "/api/statistics", "/api/health", "/api/symbol",
             "/api/financial_data/exports", "/api/fetch_run", "/api"]
    targets = []
    for path in paths:
        for variant in [path, *escaped_variants(path)]:
            targets += [variant, variant + "/", variant + "%2F//", variant + "?limit=0",
                        variant + "#x?y", variant + "%23", variant + "x", "/" + variant,
                        variant.replace("/", "//", 2)]
    for target in targets:
        decoded = unquote(re.split("[?#]", target, maxsplit=1)[0])  # gunicorn drops a fragment
        expected = decoded.rstrip("/") in PAGINATED_PATHS
        assert bool(pattern.match(target)) == expected, target


def test_production_trusts_exactly_nginx_and_shares_the_rate_limit_in_redis():
    compose = load_compose("docker-compose.prod.yml")
    services = compose["services"]
    environment = services["api"]["environment"]
    proxies_in_front = [name for name, service in services.items()
                        if str(service.get("image", "")).startswith("nginx:")]
    hops = re.fullmatch(r"\$\{PRODUCTION_PROXY_HOPS:-(\d+)\}", environment["TRUSTED_PROXY_HOPS"])
    assert int(hops.group(1)) == len(proxies_in_front) == 1
    storage = urlsplit(environment["RATELIMIT_STORAGE_URI"])
    cache = urlsplit(environment["CACHE_REDIS_URL"])
    assert storage.scheme == "redis"
    assert storage.hostname != cache.hostname, "the cache's Redis evicts keys when full"
    counters = redis_server_argv(services[storage.hostname])
    policy = counters[counters.index("--maxmemory-policy") + 1]
    assert policy == "noeviction", "an evicted counter lets a client start over"
    assert services["api"]["depends_on"][storage.hostname] == {"condition": "service_healthy"}


def redis_server_argv(service: dict) -> list[str]:
    """Return the redis-server command line of a compose service, the shell around it aside.

    ``sh -c SCRIPT redis-server OPTION...``: the script starts redis-server "$@".
    """
    command = service["command"]
    if command[:2] != ["sh", "-c"]:
        return command
    assert 'redis-server "$$@"' in command[2] and command[3] == "redis-server"
    return command[3:]


PRODUCTION_REDIS = ("redis", "ratelimit-redis")
REDIS_SECRET = "/run/secrets/redis_password"


def test_production_redis_urls_take_the_password_from_a_secret_not_from_compose():
    compose = load_compose("docker-compose.prod.yml")
    for name, service in app_services(compose).items():
        environment = service["environment"]
        assert environment["REDIS_PASSWORD_FILE"] == REDIS_SECRET, name
        assert "redis_password" in service["secrets"], name
        for variable in ("CACHE_REDIS_URL", "RATELIMIT_STORAGE_URI"):
            url = urlsplit(environment[variable])
            assert (url.scheme, url.password) == ("redis", None), f"{name}: {variable}"
            assert url.hostname in PRODUCTION_REDIS, f"{name}: {variable}"
    for name in PRODUCTION_REDIS:
        assert compose["services"][name]["secrets"] == ["redis_password"], name
    assert compose["secrets"]["redis_password"] == {"file": "./secrets/redis_password.txt"}


# What the redis image's docker-entrypoint.sh does to a redis-server command line
# (it also drops root, left out here): protected mode off, unless a config file
# comes first.
REDIS_IMAGE_ENTRYPOINT = """
if [ "$1" = redis-server ] && [ ! -f "$2" ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
"""


@pytest.mark.parametrize("name", PRODUCTION_REDIS)
def test_production_redis_asks_every_client_for_the_secrets_password(tmp_path, name):
    """Its command and health check, run here as its container runs them (on a port of its own).

    The image's entrypoint stands in as far as it changes the command line:
    it puts ``--protected-mode no`` first, unless a configuration file is.
    """
    for program in ("redis-server", "redis-cli"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed: apt-get install redis-server")
    service = load_compose("docker-compose.prod.yml")["services"][name]
    password = uuid.uuid4().hex
    secret = tmp_path / "redis_password"
    secret.write_text(password)
    port = free_port()

    def here(script: str) -> str:
        return script.replace("$$", "$").replace(REDIS_SECRET, str(secret))

    assert service["command"][:2] == ["sh", "-c"]
    entrypoint = tmp_path / "docker-entrypoint.sh"
    entrypoint.write_text(REDIS_IMAGE_ENTRYPOINT)
    script = here(service["command"][2]).replace(
        "exec docker-entrypoint.sh redis-server",
        f"exec sh {entrypoint} redis-server --port {port} --bind 127.0.0.1 --dir {tmp_path}")
    server = subprocess.Popen(["sh", "-c", script, *service["command"][3:]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        anyone, client = redis.Redis(port=port), redis.Redis(port=port, password=password)
        wait_for(lambda: server.poll() is None and _answers(anyone), f"{name} on {port}")
        with pytest.raises(redis.exceptions.RedisError, match="(?i)auth"):
            anyone.ping()
        assert client.ping()
        argv = redis_server_argv(service)
        for option in ("maxmemory-policy", "appendonly"):
            assert client.config_get(option)[option] == argv[argv.index(f"--{option}") + 1]
        assert password.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()

        health = service["healthcheck"]["test"]
        assert health[0] == "CMD-SHELL" and REDIS_SECRET in health[1]
        check = ["sh", "-c", here(health[1]).replace("redis-cli", f"redis-cli -p {port}")]
        assert subprocess.run(check, capture_output=True, timeout=10).returncode == 0
        secret.write_text("not-the-password")
        assert subprocess.run(check, capture_output=True, timeout=10).returncode != 0
        anyone.close()
        client.close()
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.mark.parametrize("content", ["", "\n", 'say "hi"', "two words", "back\\slash",
                                     "crlf\r\n", " padded"])
@pytest.mark.parametrize("name", PRODUCTION_REDIS)
def test_production_redis_refuses_a_password_it_or_the_app_would_read_otherwise(
        tmp_path, name, content):
    """An empty requirepass is no password at all; a quote stops redis-server, which logs
    the line; a backslash it unescapes and the app does not; the app strips spaces and CRs."""
    service = load_compose("docker-compose.prod.yml")["services"][name]
    secret = tmp_path / "redis_password"
    secret.write_bytes(content.encode())
    started = tmp_path / "started"
    script = service["command"][2].replace("$$", "$").replace(REDIS_SECRET, str(secret)).replace(
        "exec docker-entrypoint.sh", f"exec touch {started} #")
    refused = subprocess.run(["sh", "-c", script, *service["command"][3:]],
                             capture_output=True, text=True, timeout=10)
    assert refused.returncode == 1 and not started.exists()
    assert refused.stderr == ("secrets/redis_password.txt must hold one line of letters, "
                              "digits, '.', '_', '~' or '-' (e.g. openssl rand -hex 32)\n")
    secret.write_text("0123456789abcdef.A_b~c-d\n")
    assert subprocess.run(["sh", "-c", script, *service["command"][3:]],
                          timeout=10).returncode == 0 and started.exists()


def _answers(client: redis.Redis) -> bool:
    """Tell whether the Redis of ``client`` answers at all (a refusal counts)."""
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        return isinstance(exc, redis.exceptions.AuthenticationError)
    except redis.exceptions.ResponseError:
        return True
    return True


def test_dev_redis_asks_for_the_password_its_urls_give():
    """Its port is published on 127.0.0.1: any program on the host could write to it."""
    services = load_compose("docker-compose.dev.yml")["services"]
    command = services["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    assert re.fullmatch(r"\$\{DEV_REDIS_PASSWORD:-[a-z-]+\}", password)
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == password
    urls = [value for service in app_services({"services": services}).values()
            for variable, value in service["environment"].items()
            if variable in ("CACHE_REDIS_URL", "TEST_REDIS_URL")]
    assert len(urls) == 3 and all(urlsplit(url).password == password for url in urls)


# --- gunicorn settings ----------------------------------------------------------------

GUNICORN_VARIABLES = ("GUNICORN_WORKERS", "GUNICORN_THREADS", "GUNICORN_BIND", "PORT",
                      "FORWARDED_ALLOW_IPS", "LOG_LEVEL")


@pytest.fixture
def gunicorn_env(monkeypatch):
    for name in GUNICORN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_gunicorn_defaults_suit_a_container(gunicorn_env):
    settings = runpy.run_path(str(GUNICORN_CONF))
    assert settings["workers"] == 2 * len(os.sched_getaffinity(0)) + 1
    assert (settings["worker_class"], settings["threads"]) == ("gthread", 4)
    assert settings["bind"] == ["0.0.0.0:8000"]
    # No access log: the app's own line is the one line per request.
    assert (settings["accesslog"], settings["errorlog"]) == (None, "-")
    assert settings["graceful_timeout"] < 30, "must end before compose's stop_grace_period"


def test_gunicorn_settings_follow_the_environment(gunicorn_env):
    gunicorn_env.setenv("GUNICORN_WORKERS", "3")
    gunicorn_env.setenv("GUNICORN_THREADS", "4")
    gunicorn_env.setenv("PORT", "9000")
    gunicorn_env.setenv("FORWARDED_ALLOW_IPS", "*")
    settings = runpy.run_path(str(GUNICORN_CONF))
    assert (settings["workers"], settings["threads"]) == (3, 4)
    assert (settings["bind"], settings["forwarded_allow_ips"]) == (["0.0.0.0:9000"], "*")
    gunicorn_env.setenv("GUNICORN_BIND", "127.0.0.1:9001")
    assert runpy.run_path(str(GUNICORN_CONF))["bind"] == ["127.0.0.1:9001"]


def test_gunicorn_keeps_the_workers_metrics_in_memory_not_on_the_disk(gunicorn_env):
    """A full disk under the metric files, which workers map into memory, kills them (SIGBUS)."""
    gunicorn_env.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # restored once the test ends
    settings = runpy.run_path(str(GUNICORN_CONF))
    settings["_share_metrics_between_workers"]()
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    # Where there is no /dev/shm (macOS), the system's temporary folder.
    memory = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    try:
        assert folder.parent == memory and folder.is_dir()
    finally:
        settings["_remove_folder"](folder, os.getpid())
    assert not folder.exists()


def test_gunicorn_config_names_only_real_settings(gunicorn_env):
    known = {setting.name for setting in KNOWN_SETTINGS}
    settings = runpy.run_path(str(GUNICORN_CONF))
    names = {name for name, value in settings.items()
             if not name.startswith("_") and not isinstance(value, (ModuleType, FunctionType))}
    assert names - known == set()


# --- 4.: the entrypoint and gunicorn, run as the image runs them ---------------------

def http_get(port: int, path: str) -> tuple[int, str, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), json.loads(response.read())
    finally:
        connection.close()


def run_entrypoint(tmp_path, **settings: str) -> subprocess.CompletedProcess:
    """Run the image's entrypoint with a command that prints 'served'; kill what it leaves."""
    env = deploy_environment(APP_ENV="production", LOG_DIR=str(tmp_path), DB_WAIT_TIMEOUT="1",
                             **settings)
    command = image_command()[:1] + ["python", "-c", "print('served')"]
    logs = (tmp_path / "stdout.log", tmp_path / "stderr.log")
    # Files, not pipes: a process left in the background keeps a pipe open.
    with open(logs[0], "wb") as stdout, open(logs[1], "wb") as stderr:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=stdout, stderr=stderr,
                                   start_new_session=True)
    try:
        process.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    stdout_text, stderr_text = (path.read_text(encoding="utf-8") for path in logs)
    return subprocess.CompletedProcess(command, process.returncode, stdout_text, stderr_text)


@pytest.mark.parametrize(("settings", "message"), [
    ({}, "DATABASE_URL must be set in production"),
    ({"DATABASE_URL": "mysql+nodriver://nobody@127.0.0.1/nowhere"},
     "DATABASE_URL names an unknown database driver 'mysql+nodriver'"),
])
def test_entrypoint_stops_with_a_clear_message_before_serving(tmp_path, settings, message):
    result = run_entrypoint(tmp_path, **settings)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "served" not in result.stdout and "Traceback" not in result.stderr


def test_entrypoint_serves_while_the_database_does_not_answer(tmp_path):
    result = run_entrypoint(
        tmp_path, DATABASE_URL=f"mysql+pymysql://nobody@127.0.0.1:{free_port()}/nowhere")
    assert (result.returncode, result.stdout.strip()) == (0, "served"), result.stderr
    assert "was not ready within 1s: OperationalError" in result.stderr
    assert "starting without the database; migrating once it answers" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.mysql
def test_a_refusal_after_starting_without_the_database_stops_the_command(tmp_path):
    """Once it answers, a database refusing the settings stops the container as at the start.

    Not an API left answering 503 for good, with nobody waiting to migrate once fixed.
    """
    if not TEST_MYSQL_URL:
        pytest.skip("TEST_MYSQL_URL is not set")
    server = make_url(TEST_MYSQL_URL)
    with stalling_proxy(server.port or 3306, server.host or "127.0.0.1") as proxy:
        proxy.stall()  # no answer: the entrypoint starts the command without the database
        url = server.set(host="127.0.0.1", port=proxy.port, password="not-the-password-ft",
                         database="financial")
        env = deploy_environment(APP_ENV="production", LOG_DIR=str(tmp_path), DB_WAIT_TIMEOUT="1",
                                 DATABASE_URL=url.render_as_string(hide_password=False))
        serving = "import time; print('served', flush=True); time.sleep(300)"
        command = image_command()[:1] + ["python", "-c", serving]
        stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=err,
                                       start_new_session=True)
        try:
            wait_for(lambda: "served" in stdout.read_text(), "the command to start")
            proxy.resume()  # the database answers now, and refuses the password
            try:
                returncode = process.wait(timeout=SERVER_START_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the command kept running:\n{stderr.read_text()}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert returncode != 0
    log = stderr.read_text()
    assert "refused this configuration: OperationalError 1045" in log
    assert "entrypoint: the database refused the configuration; stopping" in log
    assert "not-the-password-ft" not in log and "Traceback" not in log


def test_a_failed_migration_stops_the_entrypoint_with_one_line(tmp_path):
    database = tmp_path / "financial.db"
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        # A table of that name holding rows, and no revision: the first migration fails.
        connection.execute("CREATE TABLE financial_data (x INTEGER)")
        connection.execute("INSERT INTO financial_data VALUES (1)")
    result = run_entrypoint(tmp_path, DATABASE_URL=f"sqlite:///{database}")
    assert result.returncode == 1, result.stderr
    assert (f"ERROR prestart: migrating database sqlite:///{database} failed: "
            "OperationalError: table financial_data already exists") in result.stderr
    assert "served" not in result.stdout and "Traceback" not in result.stderr


def test_a_migration_history_alembic_refuses_stops_the_entrypoint_with_one_line(tmp_path):
    database = tmp_path / "financial.db"
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        # A known revision beside one these scripts lack: Alembic cannot plan an upgrade.
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        connection.executemany("INSERT INTO alembic_version VALUES (?)",
                               [("0001",), ("ffff_unknown",)])
    result = run_entrypoint(tmp_path, DATABASE_URL=f"sqlite:///{database}")
    assert result.returncode == 1, result.stderr
    [error] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert (f"ERROR prestart: migrating database sqlite:///{database} failed: "
            "Can't locate revision identified by 'ffff_unknown'") in error
    assert "alembic_version" in error and "release that last migrated it" in error
    assert "served" not in result.stdout and "Traceback" not in result.stderr


def group_is_gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


# As PID 1 of a container: a PID namespace of its own (`docker stop` signals its PID 1).
AS_PID_1 = ["unshare", "--pid", "--fork", "--kill-child"]


@pytest.mark.parametrize(("launcher", "signum"), [
    ([], signal.SIGTERM), ([], signal.SIGINT), (AS_PID_1, signal.SIGTERM),
], ids=["sigterm", "sigint", "sigterm-as-pid-1"])
def test_a_stop_while_the_entrypoint_waits_for_the_database_ends_the_start(
        tmp_path, launcher, signum):
    env = deploy_environment(
        APP_ENV="production", LOG_DIR=str(tmp_path), DB_WAIT_TIMEOUT="300",
        DATABASE_URL=f"mysql+pymysql://nobody@127.0.0.1:{free_port()}/nowhere")
    command = launcher + image_command()[:1] + ["python", "-c", "print('served')"]
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=err,
                                   start_new_session=True)
    try:
        wait_for(lambda: "waiting up to 300s for the database" in stderr.read_text(),
                 "prestart to wait for the database")
        # The entrypoint's shell itself, as `docker stop` signals it: not its group.
        shell = int(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
                    .split()[0]) if launcher else process.pid
        os.kill(shell, signum)
        assert process.wait(timeout=SERVER_START_SECONDS) != 0
        wait_for(lambda: group_is_gone(process.pid), "prestart to end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert "served" not in stdout.read_text()
    assert "entrypoint: stopped while preparing the database" in stderr.read_text()


@pytest.fixture
def fresh_mysql_database():
    """URL of a new, empty MySQL database, dropped afterwards."""
    if not TEST_MYSQL_URL:
        pytest.skip("TEST_MYSQL_URL is not set")
    server_url = make_url(TEST_MYSQL_URL).set(database="")
    name = f"test_deploy_{uuid.uuid4().hex[:10]}"
    server = create_engine(server_url)
    with server.begin() as connection:
        connection.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    try:
        yield server_url.set(database=name)
    finally:
        with server.begin() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        server.dispose()


@pytest.fixture
def production_server(fresh_mysql_database, redis_url, tmp_path):
    """Start the image's ENTRYPOINT + CMD on a free port; yield (process, port, logs)."""
    url = fresh_mysql_database
    settings = {"DATABASE_URL": url.set(password=None).render_as_string(hide_password=False)}
    if url.password:
        # As in production: the URL carries no password, a secret file does.
        password_file = tmp_path / "db_password"
        password_file.write_text(url.password, encoding="utf-8")
        settings["DATABASE_PASSWORD_FILE"] = str(password_file)
    port = free_port()
    env = deploy_environment(
        APP_ENV="production", LOG_DIR=str(tmp_path / "log"), CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=redis_url, CACHE_DEFAULT_TIMEOUT="5", GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="2", GUNICORN_THREADS="2", DB_WAIT_TIMEOUT="10", **settings,
    )
    logs = (tmp_path / "stdout.log", tmp_path / "stderr.log")
    with open(logs[0], "wb") as stdout, open(logs[1], "wb") as stderr:
        process = subprocess.Popen(image_command(), cwd=tmp_path, env=env, stdout=stdout,
                                   stderr=stderr, start_new_session=True)
    try:
        yield process, port, logs
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def output_of(logs) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in logs)


def wait_until_healthy(process, port: int, logs) -> dict:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}:\n{output_of(logs)}")
        try:
            status, _, body = http_get(port, "/api/health")
        except (OSError, http.client.HTTPException, ValueError):
            status = None
        if status == 200:
            return body
        time.sleep(0.2)
    pytest.fail(f"/api/health not 200 within {SERVER_START_SECONDS}s:\n{output_of(logs)}")


@pytest.mark.mysql
@pytest.mark.redis
def test_production_start_migrates_then_serves(production_server, fresh_mysql_database):
    process, port, logs = production_server
    assert wait_until_healthy(process, port, logs)["status"] == "ok"

    status, content_type, body = http_get(port, "/api/financial_data")
    assert (status, content_type) == (200, "application/json")
    assert body == {"data": [], "pagination": {"count": 0, "page": 1, "limit": 5, "pages": 0},
                    "info": {"error": ""}}

    engine = create_engine(fresh_mysql_database)
    try:
        assert inspect(engine).has_table("financial_data")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()

    health = subprocess.run(healthcheck_command(), env=deploy_environment(
        GUNICORN_BIND=f"127.0.0.1:{port}"), capture_output=True, text=True, timeout=30)
    assert health.returncode == 0, health.stderr

    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=SERVER_START_SECONDS) == 0, output_of(logs)
    assert "INFO app.requests: GET /api/health 200 " in output_of(logs)


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.mysql
def test_concurrent_starts_migrate_one_at_a_time(fresh_mysql_database, tmp_path):
    url = fresh_mysql_database
    env = deploy_environment(APP_ENV="production", LOG_DIR=str(tmp_path),
                             DATABASE_URL=url.render_as_string(hide_password=False))
    lock = {"name": lock_name(url.database, MIGRATION_LOCK)}
    engine = create_engine(url)
    try:
        with engine.connect() as holder:
            # Another replica holds the lock: this start must wait for it.
            assert holder.execute(text("SELECT GET_LOCK(:name, 0)"), lock).scalar() == 1
            process = subprocess.Popen(
                [sys.executable, "-m", "scripts.prestart", "--timeout", "10"], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                log = tmp_path / "api.log"
                wait_for(lambda: log.exists() and "another process is migrating the database; "
                         "waiting up to 300s for it" in log.read_text(),
                         "the second start to wait for the lock")
                assert process.poll() is None
                assert not inspect(engine).has_table("financial_data")
                holder.execute(text("SELECT RELEASE_LOCK(:name)"), lock)
                assert process.wait(timeout=SERVER_START_SECONDS) == 0
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        assert inspect(engine).has_table("financial_data")
    finally:
        engine.dispose()
