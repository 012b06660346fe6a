"""The README's examples are what the quickstart serves: the API on the bundled sample.

Every JSON (or CSV) block right after a block holding one `curl` of
http://127.0.0.1:5000 is that request's documented answer; every other such
`curl`, in the README or in the OpenAPI description, must answer with data.
The table of contents links every main section; the configuration table lists every setting,
and only settings, with their defaults; `.env.example` as it is changes no setting and gives the
deployment's own fallbacks; the production steps and the migration commands fit the compose file
and the migrations; the `make` targets, the fetch job's options and the `flask` commands the
README names exist; its reasons for a symbol not fetched are the API document's, it names the
answers that are no envelope, and it says where the rate limit is counted.
"""
import json
import re
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from dotenv import dotenv_values
from flask.cli import routes_command, run_command, shell_command
from ruamel.yaml import YAML

import get_raw_data
from app import SCHEMA_REVISION
from app.api.docs import NOT_FETCHED_MEANING
from conf.settings import PROJECT_ROOT
from tests.deployment import ENV_EXAMPLE, env_example_names, settings_env_names
from tests.helpers import get_config, masked

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
SERVER = "http://127.0.0.1:5000"
CURL = re.compile(r"curl [^'\n]*'" + re.escape(SERVER) + r"(/[^']*)'")
FENCE = re.compile(r"^\s*```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    first_line: int
    last_line: int


def fenced_blocks(markdown: str) -> list[Block]:
    """Return the fenced code blocks of ``markdown``, indented ones (in lists) included."""
    blocks, opened, lines = [], None, markdown.splitlines()
    for number, line in enumerate(lines):
        match = FENCE.match(line)
        if not match:
            continue
        if opened is None:
            opened = (match.group(1), number)
        else:
            language, start = opened
            text = "\n".join(part.strip() for part in lines[start + 1:number])
            blocks.append(Block(language, text, start, number))
            opened = None
    return blocks


def documented_answers(markdown: str) -> list[tuple[str, Block]]:
    """Return (path and query, answer block) for each answer right after a one-curl block."""
    blocks = fenced_blocks(markdown)
    lines = markdown.splitlines()
    pairs = []
    for request, answer in zip(blocks, blocks[1:]):
        adjacent = not any(line.strip() for line in lines[request.last_line + 1:answer.first_line])
        urls = CURL.findall(request.text)
        if request.language == "bash" and len(urls) == 1 and adjacent:
            pairs.append((urls[0], answer))
    return pairs


ANSWERS = documented_answers(README)


def test_every_json_example_is_the_answer_to_a_curl():
    json_blocks = [block for block in fenced_blocks(README) if block.language == "json"]
    paired = [block for _, block in ANSWERS if block.language == "json"]
    assert json_blocks == paired, "a JSON example with no curl right before it"
    assert len(paired) >= 8


@pytest.mark.parametrize("path, block", ANSWERS, ids=[path for path, _ in ANSWERS])
def test_each_documented_answer_is_what_the_sample_gives(sample_client, path, block):
    response = sample_client.get(path)
    if block.language == "json":
        assert masked(response.get_json()) == masked(json.loads(block.text)), path
        return
    assert block.language == "text" and response.status_code == 200
    shown = block.text.splitlines()
    assert shown[-1] == "..."
    assert response.get_data(as_text=True).splitlines()[:len(shown) - 1] == shown[:-1]


def every_curl(sample_client) -> list[str]:
    description = sample_client.get("/api/swagger.json").get_json()["info"]["description"]
    return sorted(set(CURL.findall(README)) | set(CURL.findall(description)))


def test_every_other_curl_answers_with_data(sample_client):
    documented = {path for path, _ in ANSWERS}
    checked = 0
    for path in every_curl(sample_client):
        if path in documented:
            continue
        response = sample_client.get(path)
        assert response.status_code == 200, (path, response.get_data(as_text=True))
        if response.is_json:
            assert response.get_json()["data"], path
        else:
            assert len(response.get_data(as_text=True).splitlines()) > 1, path
        checked += 1
    assert checked >= 3, "no curl found: did the pattern break?"


def headings(markdown: str) -> list[tuple[int, str]]:
    """Return (level, text) of each heading outside fenced code blocks (shell comments aside)."""
    inside = {line for block in fenced_blocks(markdown)
              for line in range(block.first_line, block.last_line + 1)}
    found = []
    for number, line in enumerate(markdown.splitlines()):
        match = re.match(r"(#{1,6}) (.+)", line)
        if match and number not in inside:
            found.append((len(match.group(1)), match.group(2).strip()))
    return found


def github_anchors(markdown: str) -> set[str]:
    """Return the anchors GitHub gives the headings.

    Lower case, punctuation dropped, spaces made hyphens; a repeated one gets "-1", "-2"...
    """
    anchors: set[str] = set()
    for _, text in headings(markdown):
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        anchor, repeat = slug, 0
        while anchor in anchors:
            repeat += 1
            anchor = f"{slug}-{repeat}"
        anchors.add(anchor)
    return anchors


def test_every_link_within_the_readme_leads_to_a_heading():
    links = re.findall(r"\]\(#([^)\s]+)\)", README)
    assert len(links) >= 10, "the table of contents is gone"
    assert sorted(set(links) - github_anchors(README)) == []


def test_the_table_of_contents_links_every_main_section():
    contents = README.split("\n## ", 1)[0]
    main_sections = "\n".join(f"## {text}" for level, text in headings(README) if level == 2)
    linked = set(re.findall(r"\]\(#([^)\s]+)\)", contents))
    assert sorted(github_anchors(main_sections) - linked) == []


def test_the_configuration_table_lists_every_setting():
    section = README.split("\n## Configuration\n", 1)[1].split("\n#", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, flags=re.MULTILINE)
    listed = {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cell)}
    assert len(listed) >= 20, "the configuration table is gone"
    assert sorted(settings_env_names() - listed) == []


def test_the_configuration_table_gives_the_numeric_defaults_the_settings_have(monkeypatch):
    """A number in the table is what a setting left unset is (e.g. the fetch job's retries)."""
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    config = get_config("development")
    section = README.split("\n## Configuration\n", 1)[1].split("\n#", 1)[0]
    documented = {}
    for names, defaults in re.findall(r"^\| ([^|]+) \| ([^|]+) \|", section, flags=re.MULTILINE):
        names, defaults = re.findall(r"`([A-Z][A-Z0-9_]*)`", names), defaults.split(",")
        if len(names) == len(defaults) and all(re.fullmatch(r" ?\d+(\.\d+)? ?", value)
                                               for value in defaults):
            documented.update(zip(names, map(float, defaults)))
    assert {"ALPHAVANTAGE_RETRY_WAIT", "ALPHAVANTAGE_RATE_LIMIT_RETRIES",
            "ALPHAVANTAGE_REQUEST_INTERVAL", "ALPHAVANTAGE_BACKOFF_FACTOR"} <= set(documented)
    assert {name: getattr(config, name) for name in documented} == documented


PRODUCTION_COMPOSE = (PROJECT_ROOT / "docker-compose.prod.yml").read_text(encoding="utf-8")


def test_the_production_steps_name_every_variable_compose_takes_from_env():
    step = README.split("2. Optionally, set in `.env`", 1)[1].split("\n3. ", 1)[0]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", step))
    named |= {f"ALPHAVANTAGE{suffix}" for suffix in re.findall(r"`(_[A-Z][A-Z0-9_]+)`", step)}
    taken = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", PRODUCTION_COMPOSE))
    assert len(taken) >= 20, "compose reads no .env: did the pattern break?"
    assert sorted(taken - named) == []


def test_the_tech_stack_says_where_the_rate_limit_is_counted(monkeypatch):
    monkeypatch.delenv("RATELIMIT_STORAGE_URI", raising=False)
    row = next(line for line in README.splitlines() if line.startswith("| Flask-Limiter "))
    compose = YAML(typ="safe", pure=True).load(PRODUCTION_COMPOSE)
    assert get_config("development").RATELIMIT_STORAGE_URI == "memory://"
    assert "counted in each process's memory" in row
    assert compose["services"]["api"]["environment"]["RATELIMIT_STORAGE_URI"].startswith("redis://")
    assert "`docker-compose.prod.yml`" in row


def test_the_production_status_line_names_every_service_up_starts():
    """The `ps` comment of the production steps: which services turn healthy, which only run."""
    compose = YAML(typ="safe", pure=True).load(PRODUCTION_COMPOSE)
    started = {name: service for name, service in compose["services"].items()
               if not service.get("profiles")}
    # The app services get the image's HEALTHCHECK unless they turn it off.
    image = {name for name, service in started.items() if "build" in service}
    healthy = {name for name, service in started.items()
               if service.get("healthcheck", {}).get("disable") is not True
               and ("healthcheck" in service or name in image)}
    comment = re.search(r"docker-compose\.prod\.yml ps +# (.+): healthy; (.+): running", README)
    assert comment, "the production steps' ps line is gone"
    documented = [set(re.split(r", ", group)) for group in comment.groups()]
    assert documented == [healthy, set(started) - healthy]


def one_line(text: str) -> str:
    """Return ``text`` with every run of white space (a line break of the README) one space."""
    return " ".join(text.split())


def test_the_readme_tells_why_a_symbol_is_not_fetched_as_the_api_document_does():
    assert f"`not_fetched` ({one_line(NOT_FETCHED_MEANING)})" in one_line(README)


def test_the_readme_names_the_answers_that_are_no_envelope(sample_client):
    health = sample_client.get("/api/health").get_json()
    assert "data" not in health
    fields = ", ".join(f"`{name}`" for name in health if name != "info")
    claim = one_line(README).split("Every JSON response is an envelope", 1)[1].split(". ", 1)[0]
    assert f"`/api/health`'s check, which answers {fields} and `info.error`" in claim
    assert "the OpenAPI document" in claim


def test_a_new_migration_is_numbered_after_the_newest():
    """Without --rev-id Alembic names a revision at random, not 0001 onwards as the others."""
    following = f"{int(SCHEMA_REVISION) + 1:04d}"
    commands = re.findall(r"db migrate[^\n`]*", README)
    assert len(commands) >= 2, "the migration commands are gone"
    assert [re.findall(r"--rev-id (\S+)", command) for command in commands] == (
        [[following]] * len(commands))
    named = re.findall(r"versions/(\d+)_\*\.py|`SCHEMA_REVISION`\s+in\s+`app/__init__\.py`"
                       r"\s+to\s+`\"(\d+)\"`", README)
    assert sorted(number for pair in named for number in pair if number) == [following] * 2


def test_an_older_release_is_quoted_failing_on_the_newest_revision():
    """An older release on the migrated database fails on the revision it finds: the newest."""
    quoted = re.findall(r"Can't locate revision identified by '(\d+)'", README)
    assert len(quoted) >= 3, "the upgrade and rollback steps no longer quote the failure"
    assert quoted == [SCHEMA_REVISION] * len(quoted)


def configuration_rows() -> list[tuple[list[str], str]]:
    """Return (the variables named, the default cell) of each row of the configuration table."""
    section = README.split("\n## Configuration\n", 1)[1].split("\n#", 1)[0]
    return [(re.findall(r"`([A-Z][A-Z0-9_]*)`", names), defaults.strip())
            for names, defaults in re.findall(r"^\| ([^|]+) \| ([^|]+) \|", section,
                                              flags=re.MULTILINE)]


def test_every_variable_the_configuration_table_lists_is_a_setting():
    """A row for a variable nothing reads (a typo, a removed setting) would steer nothing."""
    listed = {name for names, _ in configuration_rows() for name in names}
    assert sorted(listed - settings_env_names()) == []


def setting_as_written(config, name: str) -> str:
    """Return the setting ``name`` of ``config`` written as the configuration table writes it."""
    if name == "APP_ENV":
        return config.ENV_NAME
    if name == "DATABASE_URL":  # the table writes the project's folder as …
        return config.SQLALCHEMY_DATABASE_URI.replace(str(PROJECT_ROOT), "…")
    value = getattr(config, name)
    if isinstance(value, list):
        return ",".join(value)
    if name == "LOG_DIR":
        return Path(value).relative_to(PROJECT_ROOT).as_posix()
    return str(value)


def test_the_configuration_table_gives_the_text_defaults_the_settings_have(monkeypatch):
    """A quoted default in the table (`SimpleCache`, `America/New_York`) is what the setting is."""
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    config = get_config()
    documented = {}
    for names, defaults in configuration_rows():
        values = defaults.split(", ")
        if len(names) == len(values):
            documented.update((name, value[1:-1]) for name, value in zip(names, values)
                              if re.fullmatch(r"`[^`]+`", value))
    assert {"APP_ENV", "DATABASE_URL", "CACHE_TYPE", "FETCH_SCHEDULE", "LOG_DIR"} <= set(documented)
    assert {name: setting_as_written(config, name) for name in documented} == documented


def test_a_copy_of_env_example_as_it_is_changes_no_setting(monkeypatch):
    """`.env.example`'s values are the defaults, so copying it to `.env` changes nothing unasked."""
    for name in env_example_names():
        monkeypatch.delenv(name, raising=False)
    defaults = vars(get_config())
    for name, value in dotenv_values(ENV_EXAMPLE).items():
        monkeypatch.setenv(name, value or "")
    copied = vars(get_config())
    for settings in (defaults, copied):
        del settings["problems"]
    assert copied == defaults


# `${NAME:-default}` in the compose files and the entrypoint, `_env("NAME", "default")` in
# gunicorn's config: what the deployment takes when `.env` leaves a variable out.
DEPLOYMENT_FALLBACKS = {
    "docker-compose.prod.yml": r"\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}",
    "docker-compose.dev.yml": r"\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}",
    "scripts/docker-entrypoint.sh": r"\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}",
    "conf/gunicorn.conf.py": r"_env\(\"([A-Z][A-Z0-9_]*)\", \"([^\"]*)\"\)",
}


def test_env_example_gives_the_values_the_deployment_falls_back_to():
    """A value `.env.example` fills in is the one the deployment takes when it is left out.

    A blank value in `.env.example` is the documented way to keep a deployment's own
    default (e.g. `RATE_LIMIT`, 600 per minute in production), so it is not compared.
    """
    example = {name: value for name, value in dotenv_values(ENV_EXAMPLE).items() if value}
    compared = 0
    for relative, pattern in DEPLOYMENT_FALLBACKS.items():
        source = (PROJECT_ROOT / relative).read_text(encoding="utf-8")
        for name, fallback in re.findall(pattern, source):
            if fallback and name in example:  # gunicorn writes its log level in lower case
                assert (relative, name, example[name].lower()) == (relative, name, fallback.lower())
                compared += 1
    assert compared >= 10, "no fallback found: did the patterns break?"


def test_every_make_target_and_variable_the_readme_names_is_in_the_makefile():
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    variables = set(re.findall(r"\$\(([A-Z_]+)\)", makefile))
    commands = re.findall(r"(?:^|`)make ([a-z][a-z-]*)((?: [A-Z_]+=\S*)*)", README,
                          flags=re.MULTILINE)
    named = {target for target, _ in commands}
    assert {"run", "test", "install", "openapi", "lock"} <= named
    assert sorted(named - targets) == []
    assigned = {name for _, assignments in commands
                for name in re.findall(r" ([A-Z_]+)=", assignments)}
    assert {"PORT", "PYTHON", "PYTEST_ARGS", "BENCHMARK_ARGS"} <= assigned
    assert sorted(assigned - variables) == []


def commands_text(markdown: str) -> str:
    """Return ``markdown`` on one line, so a command wrapped in a paragraph reads whole.

    Each line of a fenced block ends with a backtick, which ends a command (COMMAND_END).
    """
    inside = {line for block in fenced_blocks(markdown)
              for line in range(block.first_line + 1, block.last_line)}
    lines = [f"{line} `" if number in inside else line
             for number, line in enumerate(markdown.splitlines())]
    return re.sub(r"\s*\n\s*", " ", "\n".join(lines))


# A command's words run up to the end of its code span, a comment or the next command.
COMMAND_END = r"[^`#&|;()$]*"


def get_raw_data_options(capsys) -> set[str]:
    with pytest.raises(SystemExit):
        get_raw_data.parse_args(["--help"])
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", capsys.readouterr().out))


def test_every_option_of_the_fetch_job_the_readme_uses_exists_and_each_is_documented(capsys):
    options = get_raw_data_options(capsys)
    assert {"--symbols", "--days", "--full", "--from-file", "--dry-run", "--help"} <= options
    invocations = re.findall(r"get_raw_data\.py( " + COMMAND_END + ")", commands_text(README))
    used = {word for words in invocations for word in words.split() if word.startswith("-")}
    assert sorted(used - options) == []
    section = README.split("\n## The fetch job", 1)[1].split("\n## ", 1)[0]
    assert sorted(option for option in options
                  if not re.search(rf"(?<![\w-]){option}(?![\w-])", section)) == []


def test_every_flask_command_and_option_the_readme_uses_exists(sqlite_app):
    """`flask --app app COMMAND [--option]` in the README names the app's commands and options."""
    commands = {**sqlite_app.cli.commands, "run": run_command, "shell": shell_command,
                "routes": routes_command}
    invocations = re.findall(r"flask --app app (" + COMMAND_END + ")", commands_text(README))
    assert len(invocations) >= 10, "no flask command found: did the pattern break?"
    used = set()
    for invocation in invocations:
        words, command, path = invocation.split(), None, []
        while words and (command is None or isinstance(command, click.Group)) \
                and not words[0].startswith("-"):
            command = (commands if command is None else command.commands).get(words[0])
            path.append(words.pop(0))
            assert command is not None, f"flask {' '.join(path)}: no such command"
        known = {name for parameter in command.params for name in parameter.opts}
        for option in (word.split("=")[0] for word in words if word.startswith("-")):
            assert option in known, f"flask {' '.join(path)}: no option {option}"
        used.add(" ".join(path))
    assert {"db upgrade", "refresh-sums", "prune-runs", "forget-symbols"} <= used
