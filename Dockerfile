# One image for every service of docker-compose.yaml: the Airflow API server, scheduler (which runs
# the spark-submit drivers), DAG processor and triggerer, and the Spark master, workers and
# executors. It holds Java 17 for Spark and the Python environment that `make venv` installs, by the
# same script (deploy/install-env.sh) from the same pins (requirements.lock).
#
#   docker build -t hep-pipeline:latest .        (docker compose build does the same)
FROM python:3.11-slim-bookworm

ARG HEP_UID=50000
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# Debian's versions follow its security updates; the Python side is pinned by requirements.lock.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid "${HEP_UID}" --gid 0 hep \
    && mkdir -p /data /opt/airflow/logs /opt/airflow/auth /opt/hep-pipeline \
    && chown -R "${HEP_UID}:0" /data /opt/airflow /opt/hep-pipeline

WORKDIR /opt/hep-pipeline

# The environment first, so that its layer is rebuilt only when pyproject.toml or the lock change.
COPY pyproject.toml requirements.lock README.md ./
COPY deploy/install-env.sh deploy/
COPY hep_tasks/__init__.py hep_tasks/
RUN PYTHON=/usr/local/bin/python3.11 deploy/install-env.sh /opt/venv postgres \
    && rm -rf /root/.cache/pip

# Then the code; the project is installed editable, so hep_tasks is imported from here. The Spark
# driver JVM's class-data archive (hep_tasks/driverjvm.py) is built against the image's jars.
COPY hep_tasks/ hep_tasks/
COPY dags/ dags/
COPY plugins/ plugins/
COPY deploy/ deploy/
RUN SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=/opt/venv/bin/python /opt/venv/bin/python -m hep_tasks.localenv spark-archive

ENV PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/hep-pipeline/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/hep-pipeline/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    HEP_DATA_ROOT=/data \
    GX_ANALYTICS_ENABLED=False \
    SPARK_SUBMIT_OPTS="-XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile=/opt/hep-pipeline/hep_tasks/sparkconf/log4j2.properties -XX:SharedArchiveFile=/opt/venv/share/hep-pipeline/spark-driver.jsa -Xlog:cds=off -Xlog:cds+dynamic=off"

USER ${HEP_UID}:0
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
