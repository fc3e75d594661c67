"""The deployment files, checked without a Docker engine: docker-compose.yaml against the Compose
specification's JSON schema (vendored in deploy/compose-spec/) with every image, build context and
volume it names present; the Dockerfile through hadolint and installing exactly as `make venv` does
(deploy/install-env.sh, requirements.lock); the lock covering pyproject.toml; the service's
credentials and the compose secrets generated once, never defaulted."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from hep_tasks.localenv import REPO
from hep_tasks.services import airflow_service_environment, compose_env, ensure_credentials

SCHEMA = REPO / "deploy" / "compose-spec" / "compose-spec.json"
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
#: what a Compose user sets in .env; `make compose-env` writes the secrets among them
TEST_ENV = {
    "POSTGRES_PASSWORD": "p", "AIRFLOW_ADMIN_PASSWORD": "a", "AIRFLOW_FERNET_KEY": "f", "AIRFLOW_JWT_SECRET": "j",
    "AIRFLOW_API_SECRET_KEY": "s",
}  # fmt: skip
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


def interpolate(value, env: dict[str, str], required: set[str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error} and $$, on every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, required) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, required) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in env and (env[name] != "" or op in (None, "-", "?"))
        if op in (":?", "?"):
            required.add(name)
            if not present:
                raise ValueError(f"required variable {name} unset: {arg}")
        if present:
            return env[name]
        return arg if op in (":-", "-") else ""

    return _VARIABLE.sub(one, value)


def _compose(env: dict[str, str]) -> tuple[dict, set[str]]:
    required: set[str] = set()
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env, required), required


def test_the_vendored_compose_schema_is_the_noted_version():
    noted = re.search(r"sha256 `([0-9a-f]{64})`", (SCHEMA.parent / "README.md").read_text()).group(1)
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == noted
    assert (SCHEMA.parent / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_compose_file_is_valid_against_the_compose_specification():
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    document, _ = _compose(TEST_ENV)
    errors = sorted(Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    # and the file as written (before interpolation) too: the schema admits strings where variables stand
    raw = yaml.safe_load(COMPOSE.read_text())
    assert not list(Draft202012Validator(schema).iter_errors(raw))


def test_compose_needs_every_secret_and_defaults_none():
    _, required = _compose(TEST_ENV)
    assert required == set(TEST_ENV), "compose-env must write exactly the variables the file requires"
    for name in TEST_ENV:
        with pytest.raises(ValueError, match=f"required variable {name} unset"):
            _compose({k: v for k, v in TEST_ENV.items() if k != name})
    document, _ = _compose(TEST_ENV)
    airflow = {n: s for n, s in document["services"].items() if n.startswith("airflow-")}
    for name, service in airflow.items():
        env = service["environment"]
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:p@postgres:5432/"), name
    # published ports stay on the host's loopback unless the user says otherwise
    for name, service in document["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_services_images_builds_and_mounts_exist():
    document, _ = _compose(TEST_ENV)
    services, volumes = document["services"], set(document.get("volumes") or {})
    hep = {n for n, s in services.items() if "build" in s}
    assert {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "spark-master", "spark-worker"} <= hep
    # one image for Airflow and for Spark's master, workers and executors
    assert len({json.dumps([s["image"], s["build"]], sort_keys=True) for n, s in services.items() if n in hep}) == 1
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            build = service["build"]
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), (name, context)
            assert (context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")).is_file(), name
        else:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", service["image"]) and not service["image"].endswith(":latest"), (name, service["image"])
        for mount in service.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source")
            if source.startswith((".", "/", "~")):
                assert (REPO / source).exists(), (name, source)
            else:
                assert source in volumes, f"{name}: volume {source} is not declared"
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
        command = service.get("command") or []
        if command and isinstance(command, list) and command[0] == "python":
            assert importlib.util.find_spec(command[2]) is not None, (name, command)
    # drivers (the scheduler's tasks) and executors (the workers) see the same data root
    data = {n: [m for m in services[n]["volumes"] if m.endswith(":/data")] for n in ("airflow-scheduler", "spark-worker")}
    assert data["airflow-scheduler"] == data["spark-worker"] == ["hep-data:/data"]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    run = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_image_installs_what_make_venv_installs():
    dockerfile = DOCKERFILE.read_text()
    makefile = (REPO / "Makefile").read_text()
    # one recipe, one lock: both run deploy/install-env.sh, which installs with requirements.lock
    assert re.search(r"^RUN .*deploy/install-env\.sh /opt/venv postgres", dockerfile, re.M)
    assert re.search(r"^\tPYTHON=\$\(PYTHON\) deploy/install-env\.sh \$\(VENV\) \$\(EXTRAS\)$", makefile, re.M)
    assert re.search(r"^\$\(VENV\)/\.installed: .*requirements\.lock", makefile, re.M)
    script = (REPO / "deploy" / "install-env.sh").read_text()
    assert '--constraint "$lock"' in script and "--force-reinstall --no-deps" in script
    assert os.stat(REPO / "deploy" / "install-env.sh").st_mode & stat.S_IXUSR
    # the image's Python is the project's
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11,<3.12" and re.search(r"^FROM python:3\.11[.-]", dockerfile, re.M)
    assert "openjdk-17-jre-headless" in dockerfile
    # everything the image copies is in the build context (.dockerignore leaves it in)
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    copied = [src for line in re.findall(r"^COPY (.+)$", dockerfile, re.M) for src in line.split()[:-1] if not src.startswith("--")]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert not any(fnmatch.fnmatch(source.rstrip("/"), pattern.rstrip("/")) for pattern in ignored), source
    assert ".env" in ignored  # the compose secrets never enter the image


def test_the_image_gives_its_spark_drivers_the_options_and_archive_of_its_paths():
    """The image's SPARK_SUBMIT_OPTS is hep_tasks.driverjvm's, for the image's paths, and the
    image builds the archive it names (so its drivers start like `make venv`'s)."""
    from hep_tasks.driverjvm import archive_path, java_options

    dockerfile = DOCKERFILE.read_text()
    options = re.search(r'^\s+SPARK_SUBMIT_OPTS="([^"]+)"', dockerfile, re.M)
    assert options, "the image sets no SPARK_SUBMIT_OPTS"
    expected = java_options(archive_path("/opt/venv"), Path("/opt/hep-pipeline/hep_tasks/sparkconf/log4j2.properties"))
    assert options.group(1) == expected
    assert re.search(r"^RUN .*/opt/venv/bin/python -m hep_tasks\.localenv spark-archive$", dockerfile, re.M)
    assert "SPARK_CONF_DIR" not in dockerfile  # a non-empty directory on the class path disables the archive


def _lock_module():
    spec = importlib.util.spec_from_file_location("hep_lock", REPO / "deploy" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lock_pins_everything_pyproject_asks_for():
    lock = _lock_module()
    assert lock.stale() == [], "requirements.lock is stale: run `make lock`"
    pins = lock.read_lock()
    assert pins["pip"] and pins["pyspark"] == "4.3.0" and "pyspark-client" in pins and "apache-airflow" in pins
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values()), "every line is an exact pin"


def test_the_lock_checker_names_what_is_missing(tmp_path, monkeypatch):
    lock = _lock_module()
    stale = tmp_path / "requirements.lock"
    stale.write_text("\n".join(line for line in lock.LOCK.read_text().splitlines() if not line.startswith(("keras==", "pytest=="))))
    problems = lock.stale(stale)
    assert "keras is not pinned" in problems and "pytest is not pinned" in problems


def test_service_credentials_are_generated_once_and_never_defaulted(tmp_path):
    env = airflow_service_environment({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}, 8123)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"  # never anonymous admin
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8123"
    user, password, generated = ensure_credentials(env)
    assert (user, generated) == ("admin", True) and len(password) >= 16 and password != "admin"
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text()) == {"admin": password}
    assert ensure_credentials(env) == ("admin", password, False)  # kept, not shown again
    assert ensure_credentials(env | {"HEP_AIRFLOW_PASSWORD": "given-by-the-user"}) == ("admin", "given-by-the-user", False)
    assert json.loads(path.read_text()) == {"admin": "given-by-the-user"}


def test_compose_env_generates_missing_secrets_and_keeps_given_ones(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=mine\nSPARK_WORKERS=3\n")
    made = compose_env(env_file)
    assert set(made) == set(TEST_ENV) - {"POSTGRES_PASSWORD"}
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if not line.startswith("#"))
    assert values["POSTGRES_PASSWORD"] == "mine" and values["SPARK_WORKERS"] == "3"
    assert set(TEST_ENV) <= set(values) and stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert len(values["AIRFLOW_FERNET_KEY"]) == 44  # a Fernet key: 32 bytes, url-safe base64
    assert compose_env(env_file) == {}
    _compose(values)  # everything the compose file requires is set
