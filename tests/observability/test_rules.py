"""The alerting rules and the Prometheus and Alertmanager configurations, checked by the
servers' own tools: `promtool` (syntax, and the unit tests in observability/rules_test.yml,
where each alert fires on the series the tasks push and clears when it should) and `amtool`."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tooling import observability, services
from tooling.observability import CONFIG_DIR

pytestmark = pytest.mark.skipif(not shutil.which("promtool"), reason=observability.missing_hint())


def tool(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, cwd=CONFIG_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rules_parse_and_fire_as_their_unit_tests_say():
    assert "SUCCESS: 9 rules found" in tool("promtool", "check", "rules", "rules.yml")
    assert "SUCCESS" in tool("promtool", "test", "rules", "rules_test.yml")


def test_the_local_configurations_are_valid(settings, tmp_path):
    services = observability.all_services(settings.model_copy(update={"state_dir": tmp_path}))
    assert [s.name for s in services] == [
        "statsd-exporter",
        "pushgateway",
        "alertmanager",
        "prometheus",
    ]
    prometheus = tmp_path / "servers" / "prometheus" / "prometheus.yml"
    alertmanager = tmp_path / "servers" / "alertmanager" / "alertmanager.yml"
    tool("promtool", "check", "config", str(prometheus))
    tool("amtool", "check-config", str(alertmanager))
    receiver = yaml.safe_load(alertmanager.read_text())["receivers"][0]
    assert receiver["webhook_configs"][0]["url"] == settings.alert_webhook_url
    listens = [a.split("=", 1) for s in services for a in s.command if "listen-address=" in a]
    assert ["--cluster.listen-address", ""] in listens  # one Alertmanager: no gossip port
    web = [value for flag, value in listens if flag == "--web.listen-address"]
    assert len(web) == 4 and all(value.startswith("127.0.0.1:") for value in web)


def test_the_compose_configurations_are_this_modules_output():
    """observability/prometheus.yml and alertmanager.yml, which docker-compose.yml mounts, are
    what `observability.compose_configs()` builds: regenerate them with it after a change."""
    for name, config in observability.compose_configs().items():
        assert yaml.safe_load((CONFIG_DIR / name).read_text()) == config, name
        if name == "prometheus.yml":  # its rules path is the container's
            tool("promtool", "check", "config", "--syntax-only", name)
        else:
            tool("amtool", "check-config", name)


@pytest.mark.skipif(
    not observability.STATSD_EXPORTER.exists(), reason="make setup builds the StatsD exporter"
)
def test_airflows_tagged_statsd_metrics_become_labelled_prometheus_metrics(tmp_path):
    """What Airflow sends (InfluxDB-style tags, statsd_influxdb_enabled) through the exporter
    with observability/statsd_mapping.yml, read back from its /metrics."""
    import socket
    import time

    import httpx

    def free_port(kind: int) -> int:
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    udp, web = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    exporter = subprocess.Popen(
        [
            str(observability.STATSD_EXPORTER),
            f"--statsd.listen-udp=127.0.0.1:{udp}",
            "--statsd.listen-tcp=",
            f"--statsd.mapping-config={observability.STATSD_MAPPING}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lines = [
            b"airflow.ti.finish,dag_id=nightjar_daily,task_id=land,state=success:1|c",
            b"airflow.ti.finish,dag_id=nightjar_daily,task_id=land,state=success:1|c",
            b"airflow.dagrun.duration.success,dag_id=nightjar_daily:1500|ms",
        ]
        expected = [
            'airflow_task_instances_finished_total{dag_id="nightjar_daily",state="success",'
            'task_id="land"} 2',
            'airflow_dagrun_duration_seconds_sum{dag_id="nightjar_daily",state="success"} 1.5',
        ]
        deadline = time.monotonic() + 15
        while not services.port_open(web):  # the exporter is up
            assert time.monotonic() < deadline, "the exporter did not start"
            time.sleep(0.2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for line in lines:
                sender.sendto(line, ("127.0.0.1", udp))
        text = ""
        while time.monotonic() < deadline and not all(e in text for e in expected):
            time.sleep(0.2)
            text = httpx.get(f"http://127.0.0.1:{web}/metrics").text
        for line in expected:
            assert line in text, line
    finally:
        exporter.terminate()
        exporter.wait()
