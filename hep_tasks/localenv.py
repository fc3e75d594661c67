"""The project on one machine: environment, Airflow home, demo run; the command line of the services.

``python -m hep_tasks.localenv setup``          prepare ``.airflow/`` (metadata database, no examples, our dags/ and plugins/)
``python -m hep_tasks.localenv demo``           ``airflow dags test`` hep_simulation, then hep_pipeline on its batch; say where the data is
``python -m hep_tasks.localenv env``            print the environment as shell ``export`` lines
``python -m hep_tasks.localenv airflow-start``  Airflow as a service on 127.0.0.1 (API server, scheduler, DAG
                                                processor, triggerer), authentication on; ``airflow-stop`` stops it
``python -m hep_tasks.localenv spark-cluster-start``  a Spark standalone master and two workers on 127.0.0.1;
                                                ``spark-cluster-stop`` stops them
``python -m hep_tasks.localenv py-files``       pack ``hep_tasks`` as a zip for ``spark-submit --py-files``
``python -m hep_tasks.localenv spark-archive``  build the Spark driver JVM's class-data archive (``make venv`` does)
``python -m hep_tasks.localenv compose-env``    write ``.env`` with generated secrets for docker-compose.yaml
``python -m hep_tasks.localenv airflow-init``   migrate the database and write the login (compose's airflow-init)

The Spark connection ``hep_spark`` is defined by the environment variable ``AIRFLOW_CONN_HEP_SPARK``
(local[*] unless ``HEP_SPARK_MASTER`` says otherwise); point it at a cluster by changing that
variable. The metadata database is SQLite unless ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` names
another (``postgresql+psycopg2://user:password@host:5432/airflow``).

The services themselves (Airflow service, Spark cluster, code zip, compose secrets) live in
:mod:`hep_tasks.services`; every one records what it started, and its stop command ends exactly that.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from hep_tasks.driverjvm import build_archive, local_java_options

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "hep_pipeline"
SIMULATION_DAG_ID = "hep_simulation"
SPARK_CONN_ID = "hep_spark"


def local_environment(repo: Path = REPO, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) plus what Spark and Airflow need here; set values win."""
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.executable).parent)
    airflow_home = env.get("AIRFLOW_HOME", str(repo / ".airflow"))
    defaults = {
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "HEP_DATA_ROOT": str(repo / "data"),
        "AIRFLOW_HOME": airflow_home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": f"{airflow_home}/logs",
        "GX_ANALYTICS_ENABLED": "False",
        "SPARK_SUBMIT_OPTS": local_java_options(),  # driver JVM: C1, logs at WARN, class-data archive (driverjvm)
        f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}": json.dumps(
            {
                "conn_type": "spark",
                "host": env.get("HEP_SPARK_MASTER", "local[*]"),
                "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
            }
        ),
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    if venv_bin not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


def _airflow(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, check=True)


def setup(env: dict[str, str]) -> None:
    """Create the Airflow home and its metadata database (idempotent)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    _airflow(env, "db", "migrate")


#: hep_simulation's parameters; the rest of a demo conf goes to hep_pipeline.
SIMULATION_PARAMS = ("processes", "events_per_file", "files_per_process", "seed", "isolated_leptons_only", "qcd_redecays")
#: The demo's defaults: a fixed seed (a rerun reuses every version), fast QCD (README, Simulation) and a
#: short hyper-parameter search.
#: The demo's small set (~150 training events per class) makes global batches of ~50 events (8 steps
#: per epoch), at which the square-root rule halves a learning rate, and 5-epoch trials on it favour
#: cautious rates that then barely train the sequence models: their search looks at higher rates
#: than the default space, which is meant for full-size sets.
_DEMO_SPACE = {m: {"learning_rate": {"low": 3e-3, "high": 3e-2, "log": True}} for m in ("particle_sequence", "inclusive")}
DEMO_DEFAULTS = {
    "seed": 20190101, "qcd_redecays": 25, "tune_trials": 4, "tune_epochs": 5, "tune_time_budget_s": 240, "epochs": 30,
    "search_space": json.dumps(_DEMO_SPACE),
}


def demo(env: dict[str, str], conf: dict | None = None) -> None:
    """Simulate a batch (``hep_simulation``), run ``hep_pipeline`` on it, print where the outputs are.

    ``conf`` holds the parameters of either DAG (over :data:`DEMO_DEFAULTS`); ``airflow dags test``
    does not follow Asset events, so the simulated version is handed to the pipeline explicitly.
    """
    from hep_tasks.datasets import DatasetStore

    conf = DEMO_DEFAULTS | (conf or {})
    simulation = {k: v for k, v in conf.items() if k in SIMULATION_PARAMS}
    _airflow(env, "dags", "test", SIMULATION_DAG_ID, "--conf", json.dumps(simulation))
    store = DatasetStore(env["HEP_DATA_ROOT"])
    pipeline = {k: v for k, v in conf.items() if k not in SIMULATION_PARAMS}
    _airflow(env, "dags", "test", DAG_ID, "--conf", json.dumps(pipeline | {"simulation_versions": [store.latest("simulate")]}))
    print("\nhep-pipeline demo finished. Outputs (latest versions that passed their checks):")
    for stage, data in (
        ("simulate", "*/*.root"),
        ("ingest", "events/"),
        ("prepare", "{train,test}/"),
        ("train", "*/model.keras"),
        ("evaluate", "report.html"),
    ):
        version = store.latest(stage)
        if not version:
            continue
        manifest = store.read_manifest(stage, version)
        print(f"  {stage:9s} {version}  rows {manifest.get('counts')}")
        print(f"  {'':9s} data:     {store.path(stage, version, data)}")
        print(f"  {'':9s} manifest: {store.path(stage, version, '_manifest.json')}")
        docs = manifest.get("quality", {}).get("data_docs_index")
        if docs:
            print(f"  {'':9s} checks:   {store.path(stage, version, docs)}")
    evaluation = store.latest("evaluate")
    if evaluation:
        metrics = store.read_manifest("evaluate", evaluation)["metrics"]
        for model, m in metrics.items():
            print(f"  {model:18s} tt̄-vs-QCD AUC {m['auc_ttbar_vs_qcd']:.3f}, accuracy {m['accuracy']:.3f}")
        print(f"\n  Evaluation report: {store.path('evaluate', evaluation, 'report.html')}")
        print(f"  Published models:  {store.path('index.html')}")


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hep_tasks.localenv", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=[
            "setup", "demo", "env", "airflow-start", "airflow-stop", "airflow-init", "compose-env",
            "spark-cluster-start", "spark-cluster-stop", "py-files", "spark-archive",
        ],
    )
    parser.add_argument("--conf", type=json.loads, default=None, help="DAG run conf (JSON) for demo.")
    parser.add_argument("--port", type=int, default=None, help="airflow-start: API port (8080); spark-cluster-start: master port (7077).")
    parser.add_argument("--webui-port", type=int, default=8090, help="spark-cluster-start: master web UI port; workers take the next ones.")
    parser.add_argument("--workers", type=int, default=2, help="spark-cluster-start: number of workers.")
    parser.add_argument("--worker-cores", type=int, default=1, help="spark-cluster-start: cores per worker.")
    parser.add_argument("--worker-memory", default="2g", help="spark-cluster-start: memory per worker.")
    args = parser.parse_args(argv)
    env = local_environment()
    try:
        return _run(args, env)
    except RuntimeError as err:
        print(f"localenv {args.command}: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, env: dict[str, str]) -> int:
    from hep_tasks.services import (
        compose_env, init_airflow, pack_code, start_airflow, start_spark_cluster, stop_airflow, stop_spark_cluster,
    )  # fmt: skip

    if args.command == "env":
        for key in sorted(set(env) - set(os.environ) | {"PATH"}):
            print(f"export {key}={json.dumps(env[key])}")
    elif args.command == "setup":
        setup(env)
    elif args.command == "demo":
        setup(env)
        demo(env, args.conf)
    elif args.command == "py-files":
        print(pack_code())
    elif args.command == "spark-archive":
        print(f"Spark driver class-data archive: {build_archive(env)}")
    elif args.command == "airflow-start":
        port = args.port or int(env.get("AIRFLOW__API__PORT", "8080"))
        info = start_airflow(env, port)
        print(f"Airflow is up at {info['url']} (API server, scheduler, DAG processor, triggerer; logs in {info['logs']})")
        if info["generated_password"]:
            print(f"  login: {info['user']} / {info['password']}   (generated; shown once, kept in {info['passwords_file']})")
        else:
            print(f"  login: {info['user']}, password as given or in {info['passwords_file']}")
        print(f"  metadata database: {env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'].split('://')[0]}; stop with: make airflow-stop")
    elif args.command == "airflow-init":
        user, password, generated = init_airflow(env)
        print(f"Airflow database migrated; login {user}" + (f" / {password} (generated; shown once)" if generated else ""))
    elif args.command == "compose-env":
        path = REPO / ".env"
        made = compose_env(path)
        print(f"{path}: generated {', '.join(made) or 'nothing (all were set)'}")
        if "AIRFLOW_ADMIN_PASSWORD" in made:
            print(f"  Airflow login: admin / {made['AIRFLOW_ADMIN_PASSWORD']}   (shown once; kept in {path})")
    elif args.command == "airflow-stop":
        stopped = stop_airflow(env)
        print(f"stopped {', '.join(stopped)}" if stopped else "no Airflow service of ours was running")
    elif args.command == "spark-cluster-start":
        info = start_spark_cluster(
            env, port=args.port or 7077, webui_port=args.webui_port, workers=args.workers,
            cores=args.worker_cores, memory=args.worker_memory,
        )  # fmt: skip
        print(f"Spark master {info['master']} (web UI {info['webui']}), {args.workers} workers: {', '.join(info['workers'])}")
        print(f"  run the pipeline on it: HEP_SPARK_MASTER={info['master']} make demo  (or make airflow); stop with: make spark-cluster-stop")
    elif args.command == "spark-cluster-stop":
        stopped = stop_spark_cluster(env)
        print(f"stopped {', '.join(stopped)}" if stopped else "no Spark cluster of ours was running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
