"""Prometheus, its Pushgateway and Alertmanager for the local platform, from Debian's packages
(``make system-deps``), each on its own port under ``<state_dir>/servers/<name>``.

The tasks push their metrics to the Pushgateway (``jobs/observability/metrics.py``); Airflow
sends its own (scheduler, DAG runs, task instances) over StatsD to the StatsD exporter
(``make setup`` builds it from its Go module; ``observability/statsd_mapping.yml``). Prometheus
scrapes both, evaluates ``observability/rules.yml`` and sends what fires to Alertmanager, which
delivers to the webhook and the mail address in the settings. The two configurations are built
here, for this machine and for ``docker-compose.yml`` (``observability/prometheus.yml`` and
``alertmanager.yml`` are this module's output for the compose network; a test keeps them so).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from jobs.common.settings import PROJECT_ROOT, Settings
from tooling import services

CONFIG_DIR = PROJECT_ROOT / "observability"
RULES = CONFIG_DIR / "rules.yml"
# each Debian package is named as its binary
BINARIES = {
    "prometheus": "prometheus",
    "pushgateway": "prometheus-pushgateway",
    "alertmanager": "prometheus-alertmanager",
}
STATSD_EXPORTER = PROJECT_ROOT / ".tools" / "bin" / "statsd_exporter"
STATSD_MAPPING = CONFIG_DIR / "statsd_mapping.yml"
NAMES = (*BINARIES, "statsd-exporter")


def available() -> bool:
    return all(shutil.which(binary) for binary in BINARIES.values())


def missing_hint() -> str:
    packages = " ".join(binary for binary in BINARIES.values() if not shutil.which(binary))
    return f"metrics and alerts off: install {packages} (make system-deps, as root)"


def prometheus_config(
    pushgateway: str,
    alertmanager: str,
    interval_s: int,
    rules: str = str(RULES),
    statsd_exporter: str | None = None,
) -> dict:
    every = f"{interval_s}s"
    airflow = [{"job_name": "airflow", "static_configs": [{"targets": [statsd_exporter]}]}]
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "rule_files": [rules],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            # honor_labels: the pushed dag/task labels are kept, not renamed exported_*
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway]}],
            },
            *(airflow if statsd_exporter else []),
        ],
    }


def alertmanager_config(settings: Settings) -> dict:
    """One route, grouped per alert and task, to the webhook and mail in the settings (none
    configured: alerts are kept in Alertmanager's UI and API only)."""
    receiver: dict = {"name": "nightjar"}
    if settings.alert_webhook_url:
        receiver["webhook_configs"] = [{"url": settings.alert_webhook_url, "send_resolved": True}]
    if settings.alert_email_to:
        receiver["email_configs"] = [
            {
                "to": settings.alert_email_to,
                "from": settings.alert_email_from,
                "smarthost": settings.alert_smtp,
                "require_tls": False,
                "send_resolved": True,
            }
        ]
    wait = f"{min(settings.metrics_interval_seconds, 30)}s"
    return {
        "route": {
            "receiver": "nightjar",
            "group_by": ["alertname", "dag", "task"],
            "group_wait": wait,
            "group_interval": wait,
            "repeat_interval": "12h",
        },
        "receivers": [receiver],
    }


def compose_configs() -> dict[str, dict]:
    """The configurations ``docker-compose.yml`` mounts (``observability/<name>``): the same
    builders, with the compose network's hosts and the default settings (fill in receivers)."""
    return {
        "prometheus.yml": prometheus_config(
            "pushgateway:9091",
            "alertmanager:9093",
            15,
            "/etc/prometheus/rules.yml",
            "statsd-exporter:9102",
        ),
        "alertmanager.yml": alertmanager_config(
            Settings(alert_webhook_url=None, alert_email_to=None, metrics_interval_seconds=15)
        ),
    }


def write(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def folder(settings: Settings, name: str) -> Path:
    return settings.state_dir / "servers" / name


def all_services(settings: Settings) -> list[services.Service]:
    """The three servers, configured from ``settings`` (their config files written now)."""
    local = "127.0.0.1"
    statsd = STATSD_EXPORTER.exists()  # else Airflow's own metrics stay out (make setup)
    prometheus = write(
        folder(settings, "prometheus") / "prometheus.yml",
        prometheus_config(
            f"{local}:{settings.pushgateway_port}",
            f"{local}:{settings.alertmanager_port}",
            settings.metrics_interval_seconds,
            statsd_exporter=f"{local}:{settings.statsd_exporter_port}" if statsd else None,
        ),
    )
    alertmanager = write(
        folder(settings, "alertmanager") / "alertmanager.yml", alertmanager_config(settings)
    )
    commands = {
        "pushgateway": [
            f"--web.listen-address={local}:{settings.pushgateway_port}",
            f"--persistence.file={folder(settings, 'pushgateway') / 'metrics.data'}",
        ],
        "alertmanager": [
            f"--config.file={alertmanager}",
            f"--storage.path={folder(settings, 'alertmanager') / 'data'}",
            f"--web.listen-address={local}:{settings.alertmanager_port}",
            "--cluster.listen-address=",  # one instance: no gossip port on 0.0.0.0
        ],
        "statsd-exporter": [
            f"--statsd.listen-udp={local}:{settings.statsd_port}",
            "--statsd.listen-tcp=",  # Airflow sends UDP only
            f"--statsd.mapping-config={STATSD_MAPPING}",
            f"--web.listen-address={local}:{settings.statsd_exporter_port}",
        ],
        "prometheus": [
            f"--config.file={prometheus}",
            f"--storage.tsdb.path={folder(settings, 'prometheus') / 'data'}",
            f"--web.listen-address={local}:{settings.prometheus_port}",
        ],
    }
    ports = {
        "statsd-exporter": settings.statsd_exporter_port,
        "pushgateway": settings.pushgateway_port,
        "alertmanager": settings.alertmanager_port,
        "prometheus": settings.prometheus_port,
    }
    folder(settings, "pushgateway").mkdir(parents=True, exist_ok=True)
    binaries = {n: shutil.which(b) or b for n, b in BINARIES.items()}
    binaries["statsd-exporter"] = str(STATSD_EXPORTER)
    names = ["statsd-exporter"] if statsd else []
    return [
        services.Service(
            name, [binaries[name], *commands[name]], {"PATH": "/usr/bin:/bin"}, ports[name]
        )
        for name in (*names, "pushgateway", "alertmanager", "prometheus")
    ]


def urls(settings: Settings) -> dict[str, str]:
    local = "http://127.0.0.1"
    return {
        "Prometheus": f"{local}:{settings.prometheus_port}",
        "Alertmanager": f"{local}:{settings.alertmanager_port}",
        "Pushgateway": f"{local}:{settings.pushgateway_port}",
        "StatsD exporter": f"{local}:{settings.statsd_exporter_port}",
    }


def query(settings: Settings, expr: str) -> list[dict]:
    """The instant vector of a PromQL expression, from the local Prometheus' HTTP API."""
    import httpx

    answer = httpx.get(
        f"http://127.0.0.1:{settings.prometheus_port}/api/v1/query",
        params={"query": expr},
        timeout=10,
    ).json()
    if answer["status"] != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {answer.get('error')}")
    return answer["data"]["result"]
