"""The embedded default on one machine: environment, a project-local Airflow home, the demo run.

``python -m hep_tasks.localenv setup``   prepare ``.airflow/`` (SQLite, no examples, our dags/ and plugins/)
``python -m hep_tasks.localenv demo``    run the whole DAG with ``airflow dags test`` and say where the data is
``python -m hep_tasks.localenv env``     print the environment as shell ``export`` lines

The Spark connection ``hep_spark`` is defined by the environment variable ``AIRFLOW_CONN_HEP_SPARK``
(local[*] unless ``HEP_SPARK_MASTER`` says otherwise); point it at a cluster by changing that
variable or by creating the connection in the Airflow UI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "hep_pipeline"
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
    """Create the Airflow home and its SQLite metadata database (idempotent)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    _airflow(env, "db", "migrate")


def demo(env: dict[str, str], conf: dict | None = None) -> None:
    """Run the whole DAG once on the embedded default and print where its outputs are."""
    args = ["dags", "test", DAG_ID]
    if conf:
        args += ["--conf", json.dumps(conf)]
    _airflow(env, *args)
    from hep_tasks.datasets import DatasetStore

    store = DatasetStore(env["HEP_DATA_ROOT"])
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hep_tasks.localenv", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["setup", "demo", "env"])
    parser.add_argument("--conf", type=json.loads, default=None, help="DAG run conf (JSON) for demo.")
    args = parser.parse_args(argv)
    env = local_environment()
    if args.command == "env":
        for key in sorted(set(env) - set(os.environ) | {"PATH"}):
            print(f"export {key}={json.dumps(env[key])}")
    elif args.command == "setup":
        setup(env)
    else:
        setup(env)
        demo(env, args.conf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
