"""Long-running pieces of the deployed shape on one machine: the Airflow service, a Spark
standalone cluster, the code zip for ``spark-submit --py-files`` and the secrets of
``docker-compose.yaml``. Driven by ``python -m hep_tasks.localenv`` (``make airflow``,
``make spark-cluster``, ``make compose-env``).

Every service started here records its process id and start time under its state directory;
the matching stop function ends exactly those processes and their children, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from hep_tasks.localenv import REPO, setup

AIRFLOW_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


# --- code for remote executors ---------------------------------------------------------------


def pack_code(dest: Path | None = None) -> Path:
    """``hep_tasks`` as a zip for ``spark-submit --py-files``; the name carries a hash of the content.

    Sources only (no caches); the same code always gives the same file, so packing again is free.
    """
    package = Path(__file__).resolve().parent
    sources = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(package.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    dest = Path(dest or Path(tempfile.gettempdir()) / "hep-py-files")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"hep_tasks-{digest.hexdigest()[:16]}.zip"
    if not target.exists():
        partial = target.with_suffix(f".{os.getpid()}.part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sources:
                info = zipfile.ZipInfo(str(path.relative_to(package.parent)), date_time=(2020, 1, 1, 0, 0, 0))
                archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
        os.replace(partial, target)
    return target


# --- services: started in sessions of their own, recorded, stopped by record ------------------


def _record_path(state: Path, name: str) -> Path:
    return state / f"{name}.pid.json"


def _spawn(state: Path, name: str, cmd: list[str], env: dict[str, str], log: Path) -> int:
    """Start ``cmd`` detached (own session, output to ``log``) and record its pid and start time."""
    import psutil

    state.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    record = {"name": name, "pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "cmd": cmd, "log": str(log)}
    _record_path(state, name).write_text(json.dumps(record))
    return proc.pid


def recorded_processes(state: Path) -> dict[str, tuple[dict, Any]]:
    """Every service recorded in ``state``: its record and its live ``psutil.Process`` (None when it is
    gone, or when its pid now belongs to another process)."""
    import psutil

    found = {}
    for path in sorted(state.glob("*.pid.json")) if state.is_dir() else []:
        record = json.loads(path.read_text())
        try:
            proc = psutil.Process(record["pid"])
            alive = abs(proc.create_time() - record["create_time"]) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            proc, alive = None, False
        found[record["name"]] = (record, proc if alive else None)
    return found


def _stop_recorded(state: Path, timeout: float = 30) -> list[str]:
    """Terminate every recorded live process with its children; kill what outlives ``timeout``."""
    import psutil

    tree, names = [], []
    for name, (record, proc) in recorded_processes(state).items():
        if proc is not None:
            names.append(name)
            try:
                tree += [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        _record_path(state, name).unlink(missing_ok=True)
    for p in tree:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    return names


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now (connections of a stopped one in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _get_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _log_tail(path: str, chars: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _wait_until(check, state: Path, what: str, timeout: float) -> object:
    """Poll ``check()`` until it returns a value; fail (stopping the services) when one exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        result = None
        try:
            result = check()
        except (OSError, ValueError):
            pass
        if result:
            return result
        dead = [(name, record) for name, (record, proc) in recorded_processes(state).items() if proc is None]
        if dead or time.monotonic() > deadline:
            _stop_recorded(state)
            detail = "\n".join(f"--- {n} ({r['log']}):\n{_log_tail(r['log'])}" for n, r in dead)
            reason = f"{', '.join(n for n, _ in dead)} exited" if dead else f"not ready after {timeout:.0f} s"
            raise RuntimeError(f"{what}: {reason}; stopped what was started\n{detail}")
        time.sleep(2)


# --- Airflow as a service ---------------------------------------------------------------------


def airflow_state_dir(env: dict[str, str]) -> Path:
    return Path(env["AIRFLOW_HOME"]) / "service"


def airflow_service_environment(env: dict[str, str], port: int) -> dict[str, str]:
    """The service's settings on top of ``env``: API server on 127.0.0.1:``port``, LocalExecutor, login required.

    Values already set in ``env`` win, except that anonymous admin access is always off.
    """
    home = env["AIRFLOW_HOME"]
    user = env.get("HEP_AIRFLOW_USER", "admin")
    settings = {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        # task runners reach the execution API here; without it they call localhost:8080
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor pre-forks this many workers: a few suit a 2-core machine
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": f"{home}/simple_auth_manager_passwords.json",
    }
    out = dict(env)
    for key, value in settings.items():
        out.setdefault(key, value)
    out["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "False"
    return out


def ensure_credentials(env: dict[str, str]) -> tuple[str, str, bool]:
    """(user, password, generated): the service's login, ``HEP_AIRFLOW_PASSWORD`` or generated once.

    The password lives in SimpleAuthManager's passwords file (mode 600) in the Airflow home; a
    generated one is kept there and reused, so it is shown only when it is made.
    """
    user = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")[0].split(":")[0]
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    passwords = json.loads(path.read_text() or "{}") if path.exists() else {}
    given = env.get("HEP_AIRFLOW_PASSWORD")
    if given:
        passwords[user], generated = given, False
    elif user in passwords:
        return user, passwords[user], False
    else:
        passwords[user], generated = secrets.token_urlsafe(18), True
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(passwords, f)
    os.chmod(path, 0o600)
    return user, passwords[user], generated


def start_airflow(env: dict[str, str], port: int = 8080, timeout: float = 300) -> dict[str, str]:
    """Migrate the metadata database, then start the four Airflow services and wait until they are healthy.

    Returns ``url``, ``user``, ``password``, ``generated_password``, ``passwords_file`` and ``logs``.
    """
    env = airflow_service_environment(env, port)
    state = airflow_state_dir(env)
    running = [name for name, (_, proc) in recorded_processes(state).items() if proc is not None]
    if running:
        raise RuntimeError(f"Airflow services already running ({', '.join(running)}); stop them first (make airflow-stop)")
    if not _port_free(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is taken; choose another (make airflow AIRFLOW_PORT=...)")
    setup(env)
    user, password, generated = ensure_credentials(env)
    airflow = str(Path(sys.executable).parent / "airflow")
    logs = Path(env["AIRFLOW_HOME"]) / "logs" / "service"
    commands = {
        "api-server": [airflow, "api-server", "--host", env["AIRFLOW__API__HOST"], "--port", str(port)],
        "scheduler": [airflow, "scheduler", "--skip-serve-logs"],  # its log server would listen on 0.0.0.0:8793
        "dag-processor": [airflow, "dag-processor"],
        "triggerer": [airflow, "triggerer", "--skip-serve-logs"],  # and this one on 0.0.0.0:8794
    }
    for name in AIRFLOW_SERVICES:
        _spawn(state, name, commands[name], env, logs / f"{name}.log")
    url = env["AIRFLOW__API__BASE_URL"].rstrip("/")

    def healthy() -> bool:
        health = _get_json(f"{url}/api/v2/monitor/health")
        parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
        return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

    _wait_until(healthy, state, "Airflow", timeout)
    return {
        "url": url, "user": user, "password": password, "generated_password": generated,
        "passwords_file": env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"], "logs": str(logs),
    }  # fmt: skip


def init_airflow(env: dict[str, str]) -> tuple[str, str, bool]:
    """What a deployment runs once before its Airflow services: migrate the database, write the login."""
    env = airflow_service_environment(env, int(env.get("AIRFLOW__API__PORT", "8080")))
    setup(env)
    return ensure_credentials(env)


def compose_env(path: Path) -> dict[str, str]:
    """Write the secrets docker-compose.yaml requires into ``path`` (an ``.env`` file, mode 600).

    Keys already there are kept; missing ones are generated and returned."""
    import base64

    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                values[key.strip()] = value.strip()
    generators = {
        "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
        "AIRFLOW_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
        "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(32),
        "AIRFLOW_API_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    }
    made = {key: make() for key, make in generators.items() if not values.get(key)}
    values.update(made)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# docker-compose.yaml's settings and secrets (python -m hep_tasks.localenv compose-env)\n")
        f.writelines(f"{key}={value}\n" for key, value in values.items())
    os.chmod(path, 0o600)
    return made


def stop_airflow(env: dict[str, str]) -> list[str]:
    """Stop the Airflow services ``start_airflow`` started (and the tasks they run); returns their names."""
    return _stop_recorded(airflow_state_dir(env))


# --- Spark standalone cluster -----------------------------------------------------------------


def spark_cluster_state_dir(env: dict[str, str]) -> Path:
    return Path(env.get("HEP_SPARK_CLUSTER_HOME", str(REPO / ".spark-cluster")))


def start_spark_cluster(
    env: dict[str, str],
    port: int = 7077,
    webui_port: int = 8090,
    workers: int = 2,
    cores: int = 1,
    memory: str = "2g",
    worker_webui_ports: list[int] | None = None,
    timeout: float = 120,
) -> dict:
    """A standalone master and ``workers`` workers on 127.0.0.1, each its own JVM (``spark-class``).

    Returns ``master`` (the URL for ``--master`` / the Spark connection), ``webui`` and ``workers``
    (each worker's web UI URL).
    """
    state = spark_cluster_state_dir(env)
    running = [name for name, (_, proc) in recorded_processes(state).items() if proc is not None]
    if running:
        raise RuntimeError(f"Spark cluster already running ({', '.join(running)}); stop it first (make spark-cluster-stop)")
    ui_ports = worker_webui_ports or [webui_port + 1 + i for i in range(workers)]
    taken = [p for p in (port, webui_port, *ui_ports) if not _port_free(p)]
    if taken:
        raise RuntimeError(f"ports {taken} on 127.0.0.1 are taken; choose others")
    spark_class = str(Path(sys.executable).parent / "spark-class")
    env = dict(env, SPARK_LOCAL_IP="127.0.0.1")
    master = f"spark://127.0.0.1:{port}"
    _spawn(
        state, "master",
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui_port)],
        env, state / "logs" / "master.log",
    )  # fmt: skip
    for i, ui_port in enumerate(ui_ports):
        work = state / f"worker-{i + 1}"
        work.mkdir(parents=True, exist_ok=True)
        _spawn(
            state, f"worker-{i + 1}",
            [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(cores),
             "--memory", memory, "--webui-port", str(ui_port), "--work-dir", str(work), master],
            env, state / "logs" / f"worker-{i + 1}.log",
        )  # fmt: skip
    webui = f"http://127.0.0.1:{webui_port}"

    def all_alive() -> bool:
        alive = [w for w in _get_json(f"{webui}/json")["workers"] if w["state"] == "ALIVE"]
        return len(alive) >= workers

    _wait_until(all_alive, state, "Spark cluster", timeout)
    info = {"master": master, "webui": webui, "workers": [f"http://127.0.0.1:{p}" for p in ui_ports], "state": str(state)}
    (state / "cluster.json").write_text(json.dumps(info))
    return info


def stop_spark_cluster(env: dict[str, str]) -> list[str]:
    """Stop the master and workers ``start_spark_cluster`` started (with their executors)."""
    state = spark_cluster_state_dir(env)
    (state / "cluster.json").unlink(missing_ok=True)
    return _stop_recorded(state)
