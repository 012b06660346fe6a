"""The deployment files read as the image reads them: the Dockerfile's stages and command.

Shared by the tests that check the deployment files and those that run its
servers; paths in the image map onto this checkout.
"""
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Return each stage's (INSTRUCTION, arguments), continuation lines joined.

    Stages are keyed by their AS name; the last one is also keyed "final".
    """
    stages, current, pending = {}, None, ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            current = stages.setdefault(arguments.split()[-1], [])
        current.append((keyword.upper(), arguments.strip()))
    stages["final"] = current
    return stages


def instruction(stage: list[tuple[str, str]], keyword: str) -> str:
    """Return the arguments of the stage's last ``keyword`` instruction."""
    matches = [arguments for name, arguments in stage if name == keyword]
    assert matches, f"the stage has no {keyword}"
    return matches[-1]


def inherited(stages: dict, stage: list[tuple[str, str]], keyword: str) -> str:
    """Return ``keyword``'s arguments in ``stage``, or in the stage it is built FROM."""
    if any(name == keyword for name, _ in stage):
        return instruction(stage, keyword)
    parent = stage[0][1].split()[0]
    assert parent in stages, f"no {keyword} in the stage or its parents"
    return inherited(stages, stages[parent], keyword)


def in_checkout(argv: list[str]) -> list[str]:
    """Map the image's WORKDIR (/app) paths onto this checkout."""
    stages = dockerfile_stages()
    workdir = inherited(stages, stages["final"], "WORKDIR").rstrip("/") + "/"
    return [str(ROOT / arg[len(workdir):]) if arg.startswith(workdir) else arg for arg in argv]


def image_command() -> list[str]:
    """Return ENTRYPOINT + CMD of the production image, on this checkout."""
    final = dockerfile_stages()["final"]
    return in_checkout(json.loads(instruction(final, "ENTRYPOINT"))
                       + json.loads(instruction(final, "CMD")))


def healthcheck_command() -> list[str]:
    options_and_command = instruction(dockerfile_stages()["final"], "HEALTHCHECK")
    return in_checkout(json.loads(options_and_command.split(" CMD ", 1)[1]))


def settings_env_names() -> set[str]:
    """Every variable conf/settings.py reads: the settings of the API and the fetch job."""
    source = (ROOT / "conf" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r"\b(?:env_[a-z]+|read_secret_file)[(,]\s*\"([A-Z][A-Z0-9_]*)\"", source))


def env_example_names() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"),
                          flags=re.MULTILINE))


def deploy_environment(**settings: str) -> dict[str, str]:
    """Return this process's environment minus the app's variables, plus ``settings``.

    The venv's bin folder leads PATH, as /opt/venv/bin does in the image.
    """
    env = {k: v for k, v in os.environ.items() if k not in env_example_names()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **settings}
