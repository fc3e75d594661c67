"""Real Airflow services: `airflow standalone` (API server, scheduler, DAG processor, triggerer) on
127.0.0.1 with a throw-away home; the REST API lists hep_pipeline without import errors. Everything
started here is stopped here."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hep_tasks.localenv import local_environment

pytestmark = pytest.mark.slow
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None, data: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    body = json.dumps(data).encode() if data is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=10) as response:
        return json.loads(response.read())


def test_api_server_lists_the_pipeline(tmp_path):
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env = local_environment(base=base | {"AIRFLOW_HOME": str(tmp_path / "airflow"), "HEP_DATA_ROOT": str(tmp_path / "data")})
    env |= {"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port)}
    log = open(tmp_path / "standalone.log", "w")
    proc = subprocess.Popen([AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = _get(f"{url}/api/v2/monitor/health")
                if all(health.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler", "dag_processor")):
                    break
            except OSError:
                pass
            time.sleep(3)
        assert health and health["scheduler"]["status"] == "healthy", (tmp_path / "standalone.log").read_text()[-3000:]
        password = re.search(r"Password for user 'admin': (\S+)", (tmp_path / "standalone.log").read_text()).group(1)
        token = _get(f"{url}/auth/token", data={"username": "admin", "password": password})["access_token"]
        for _ in range(30):  # the DAG processor may still be parsing
            dags = _get(f"{url}/api/v2/dags?dag_id_pattern=hep_pipeline", token)["dags"]
            if dags:
                break
            time.sleep(2)
        assert [d["dag_id"] for d in dags] == ["hep_pipeline"]
        assert not dags[0]["has_import_errors"]
        assert {t["name"] for t in dags[0]["tags"]} >= {"hep", "spark"}
        assert _get(f"{url}/api/v2/importErrors", token)["total_entries"] == 0
        params = _get(f"{url}/api/v2/dags/hep_pipeline/details", token)["params"]
        assert params["events_per_file"]["schema"]["type"] == "integer"
    finally:
        _stop_tree(proc)
        log.close()


def _stop_tree(proc: subprocess.Popen) -> None:
    """Stop `airflow standalone` and every process it started (they open sessions of their own)."""
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for p in tree:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=30)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=10)
    proc.wait(timeout=10)
