"""The compose deployment keeps its data and exposes only what it should: docker-compose.yml checked
against the Compose Specification's JSON schema (vendored in tests/fixtures) and for the properties
issue 10 asked for; the Dockerfile, .dockerignore and constraints.txt beside it. No Docker engine
needed: the files are read as `docker compose` reads them (YAML, then ${VAR} interpolation)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"
SERVICES = {"postgres", "kafka", "api", "scheduler", "relay", "worker", "caselog"}
ENV = {"CASELOG_SECRET": "test-secret"}


class Unset(Exception):
    """A required variable (${VAR:?message}) is not set: `docker compose` refuses to start."""


VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                      r"|(?P<named>[A-Za-z_]\w*))")


def interpolate(value, env: dict[str, str]):
    """The Compose Specification's interpolation of every string value: $$, $VAR, ${VAR},
    ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name = m["braced"] or m["named"]
        op, arg, current = m["op"], m["arg"], env.get(name)
        present = current is not None and (current != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return current if present else arg
        if op in (":?", "?"):
            if not present:
                raise Unset(f"{name}: {arg}")
            return current
        if op in (":+", "+"):
            return arg if present else ""
        return current or ""

    return VARIABLE.sub(one, value)


def compose(env: dict[str, str] | None = None) -> dict:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return interpolate(raw, ENV if env is None else env)


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def published(service: dict) -> list[tuple[str, str, str]]:
    """(host_ip, published, target) of each published port, short or long syntax."""
    ports = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            ports.append((p.get("host_ip", ""), str(p.get("published", "")), str(p["target"])))
        else:
            parts = str(p).rsplit(":", 2)
            ports.append(("", *parts) if len(parts) == 2 else (*parts,) if len(parts) == 3 else ("", "", parts[0]))
    return ports


def long_running(doc: dict) -> dict[str, dict]:
    return {name: s for name, s in doc["services"].items() if not s.get("profiles")}


def test_the_compose_file_follows_the_compose_specification():
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]
    assert set(compose()["services"]) == SERVICES


def test_the_signing_secret_must_be_set_and_has_no_default():
    with pytest.raises(Unset, match="CASELOG_SECRET"):
        compose({})
    with pytest.raises(Unset, match="CASELOG_SECRET"):
        compose({"CASELOG_SECRET": ""})
    for name, service in compose()["services"].items():
        if name in ("postgres", "kafka"):
            continue
        assert service["environment"]["CASELOG_SECRET"] == "test-secret", name
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


def test_what_the_deployment_keeps_lives_in_named_volumes():
    doc = compose()
    named = set(doc["volumes"])
    mounts = {name: dict(reversed(v.split(":")[:2]) for v in s.get("volumes", []))
              for name, s in doc["services"].items()}
    assert mounts["postgres"]["/var/lib/postgresql/data"] in named
    kafka = doc["services"]["kafka"]["environment"]
    assert mounts["kafka"][kafka["KAFKA_LOG_DIRS"]] in named, "the topic must outlive the container"
    data_dir = next(args.split("=", 1)[1] for op, args in dockerfile() if op == "ENV" and "CASELOG_DATA_DIR=" in args)
    assert mounts["api"][f"{data_dir}/documents"] in named, "uploaded documents (DocumentStore) need a named volume"
    assert not [args for op, args in dockerfile() if op == "VOLUME"], "an image VOLUME is an anonymous volume"


def test_long_running_services_restart_and_report_their_health():
    services = long_running(compose())
    assert set(services) == SERVICES - {"caselog"}
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), name
    assert compose()["services"]["caselog"].get("restart") == "no"  # one-off commands (run --rm)


def test_published_ports_listen_on_loopback_unless_told_otherwise():
    ports = [p for s in compose()["services"].values() for p in published(s)]
    assert {(p[1], p[2]) for p in ports} == {("5432", "5432"), ("9094", "9094"), ("8000", "8000")}
    assert {p[0] for p in ports} == {"127.0.0.1"}
    wide = compose({**ENV, "CASELOG_BIND_ADDRESS": "0.0.0.0", "CASELOG_API_PORT": "8080"})
    assert {p[0] for s in wide["services"].values() for p in published(s)} == {"0.0.0.0"}
    assert ("0.0.0.0", "8080", "8000") in published(wide["services"]["api"])


def _listeners(value: str) -> dict[str, tuple[str, str]]:
    found = {}
    for item in value.split(","):
        name, address = item.strip().split("://")
        host, port = address.rsplit(":", 1)
        found[name] = (host, port)
    return found


@pytest.mark.parametrize("env", [ENV, {**ENV, "CASELOG_KAFKA_PORT": "19094",
                                       "CASELOG_KAFKA_ADVERTISED_HOST": "kafka.example"}])
def test_kafka_serves_the_containers_and_host_clients_on_their_own_listeners(env):
    doc = compose(env)
    kafka = doc["services"]["kafka"]
    settings = kafka["environment"]
    listeners, advertised = _listeners(settings["KAFKA_LISTENERS"]), _listeners(settings["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in settings["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols)
    internal = {name for name, (host, _) in advertised.items() if host == "kafka"}
    assert len(internal) == 1 and advertised[internal.pop()][1] == "9092"
    for service in ("relay", "worker"):
        assert doc["services"][service]["environment"]["CASELOG_KAFKA_BOOTSTRAP"] == "kafka:9092"
    (host_ip, port, target), = published(kafka)
    external = [name for name, (_, p) in listeners.items() if p == target]
    assert len(external) == 1, "the published port must be a listener of its own"
    assert advertised[external[0]] == (env.get("CASELOG_KAFKA_ADVERTISED_HOST", "127.0.0.1"), port)
    assert settings["KAFKA_LISTENERS"].count("9092") == 1 and host_ip == "127.0.0.1"


def test_the_image_runs_as_an_unprivileged_user_owning_its_data_dir():
    steps = dockerfile()
    user = [args for op, args in steps if op == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0"), user
    data_dir = next(args.split("=", 1)[1] for op, args in steps if op == "ENV" and "CASELOG_DATA_DIR=" in args)
    owner = user if ":" in user else f"{user}:"
    assert any(op == "RUN" and f"chown -R {owner}" in args and data_dir in args for op, args in steps), \
        f"{data_dir} must belong to {user}"
    last = {op: i for i, (op, _) in enumerate(steps)}
    assert last["USER"] > last["RUN"], "every RUN after the last USER runs as that user"


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's .dockerignore matching: a pattern excludes a path or any directory above it; ! re-includes;
    the last match wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for raw in patterns:
        negate, pattern = raw.startswith("!"), raw.lstrip("!").strip("/")
        regex = (re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
                 .replace(r"\*", "[^/]*").replace(r"\?", "[^/]"))
        if any(re.fullmatch(regex, c) for c in candidates):
            result = not negate
    return result


def test_the_build_context_leaves_out_data_environments_and_history():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for path in ("caselog-data/caselog.db", "caselog-data/documents/ab/abcd", "some/where/caselog-data/secret.key",
                 ".venv/bin/python", ".git/HEAD", "bench/out/read_models.json", ".pytest_cache/v", ".hypothesis/x",
                 "infra/__pycache__/cli.cpython-311.pyc", ".env"):
        assert _ignored(patterns, path), path
    copied = [src for op, args in dockerfile() if op == "COPY"
              for src in args.split()[:-1] if not src.startswith("--")]
    for src in copied:
        assert not _ignored(patterns, src), f"the Dockerfile copies {src}, which .dockerignore leaves out"


def test_the_image_installs_pinned_versions_of_every_dependency():
    steps = dockerfile()
    assert any(op == "RUN" and "pip install" in args and "--constraint constraints.txt" in args for op, args in steps)
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", line
            pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    assert "caselog" not in pins, "the project itself is not a constraint (pip freeze --exclude-editable)"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        req = Requirement(dependency)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt (make constraints)"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"{req.name}=={pins[name]} is outside {req.specifier}"


def test_the_kafka_client_checksums_record_batches_in_c():
    """Without the crc32c package (kafka-python's ``crc32c`` extra) kafka-python computes each record
    batch's CRC-32C in Python: two thirds of the relay's CPU per event (bench/RESULTS.md, Kafka relay)."""
    from kafka.record import util

    assert util.crc32c_c is not None, "pip install 'kafka-python[crc32c]'"
    assert util._crc32c is util.crc32c_c
    assert any(line.startswith("crc32c==") for line in (ROOT / "constraints.txt").read_text().splitlines()), \
        "the image pins crc32c too (make constraints)"
