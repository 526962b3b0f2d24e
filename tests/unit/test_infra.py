"""The compose file and Kubernetes manifests use settings, commands and names that exist.

No container engine runs here, so these check what can go wrong without one: a renamed setting,
a CLI flag that no longer exists, a work pool or deployment name out of step with prefect.yaml.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings
from flows.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
_DEFAULTED = re.compile(r"\$\{\w+:-([^}]*)\}")


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((INFRA / "docker-compose.yml").read_text()))


def _manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def _after(flag: str, arguments: list[str]) -> str:
    return arguments[arguments.index(flag) + 1]


def _settings_from(environment: dict[str, str]) -> Settings:
    """Settings built from the TICKETS_* entries, with compose's ${VAR:-default} resolved."""
    values: dict[str, Any] = {
        key.removeprefix("TICKETS_").lower(): _DEFAULTED.sub(r"\1", str(value))
        for key, value in environment.items()
        if key.startswith("TICKETS_")
    }
    known = {name.removeprefix("TICKETS_").lower() for name in Settings.env_names()}
    unknown = set(values) - known
    assert not unknown, f"not settings: {sorted(unknown)}"
    return Settings(**{key: value for key, value in values.items() if value != ""})


def test_compose_settings_are_real_and_valid() -> None:
    compose = _compose()
    environment = compose["x-tickets-env"]
    settings = _settings_from(environment)
    assert settings.artifact_store_url().startswith("s3://")
    assert settings.prediction_log_url is not None
    assert settings.prediction_log_url.get_secret_value().startswith("postgresql://")
    for name in ("api", "worker", "mlflow", "bootstrap"):
        assert compose["services"][name]["environment"] == environment


def test_compose_commands_parse_with_the_real_cli() -> None:
    services = _compose()["services"]
    _parser().parse_args(services["api"]["command"])
    bootstrap = services["bootstrap"]["command"][0]
    simulate = re.search(r"tickets (simulate [^;|&]+)", bootstrap)
    assert simulate is not None
    _parser().parse_args(simulate.group(1).split())


def test_pool_and_deployments_match_prefect_yaml() -> None:
    prefect = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in prefect["deployments"]}
    flows = {d["entrypoint"].split(":")[1] + "/" + d["name"] for d in prefect["deployments"]}
    services = _compose()["services"]
    assert _after("--pool", services["worker"]["command"]) in pools
    bootstrap = services["bootstrap"]["command"][0]
    assert set(re.findall(r"deployment run (\S+)", bootstrap)) <= flows
    assert set(re.findall(r"work-pool create (\S+)", bootstrap)) <= pools
    assert prefect["prefect-version"] == version("prefect"), "prefect.yaml names the locked Prefect"
    workers = [m for m in _manifests() if m["metadata"]["name"] == "tickets-worker"]
    assert (
        _after("--pool", workers[0]["spec"]["template"]["spec"]["containers"][0]["args"]) in pools
    )


def test_kubernetes_settings_and_service_args_are_real() -> None:
    manifests = _manifests()
    environment: dict[str, str] = {}
    for manifest in manifests:
        if manifest["kind"] in ("ConfigMap", "Secret"):
            environment.update(manifest.get("data") or manifest.get("stringData") or {})
    _settings_from({k: v for k, v in environment.items() if not v.endswith("CHANGE-ME")})
    (api,) = [
        m for m in manifests if m["metadata"]["name"] == "tickets-api" and "template" in m["spec"]
    ]
    container = api["spec"]["template"]["spec"]["containers"][0]
    _parser().parse_args(container["args"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"


@pytest.mark.parametrize(
    "needle", ["make install LOCK=requirements.lock", 'ENTRYPOINT ["tickets"]']
)
def test_the_image_is_built_by_make_install_from_the_runtime_lock(needle: str) -> None:
    assert needle in (INFRA / "Dockerfile").read_text()
    assert ".venv" in (ROOT / ".dockerignore").read_text().split()


def _pins(lock: str) -> dict[str, str]:
    """name -> version of a uv lock; every requirement must carry hashes."""
    text = (ROOT / lock).read_text()
    requirements = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=\S+(?: \\)?\n)+)", text, re.M
    )
    lines = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert len(requirements) == len(lines), f"{lock}: every requirement is pinned with hashes"
    return {name.lower(): version for name, version, _ in requirements}


def test_the_runtime_lock_has_no_dev_tools_and_agrees_with_the_dev_lock() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert {"pytest", "moto", "schemathesis", "mypy", "ruff", "hypothesis"} <= set(dev)
    assert not {"pytest", "moto", "schemathesis", "mypy", "ruff", "hypothesis"} & set(runtime)
    assert {"litestar", "prefect", "scikit-learn", "skops"} <= set(runtime)
    assert {name: dev.get(name) for name in runtime} == runtime, "same pins in both locks"


def test_ci_and_pre_commit_run_the_readme_commands() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(".ci/run" in step for step in steps), "the workflow runs what CI runs"
    ci_commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci_commands[-1] == "make test", ".ci/run ends with the README's command"
    python = [
        step["with"]["python-version"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "setup-python" in step.get("uses", "")
    ]
    assert python == ["3.11"]
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    entries = [hook["entry"] for repo in hooks["repos"] for hook in repo["hooks"]]
    assert entries == [".venv/bin/ruff check --fix", ".venv/bin/ruff format"]


def test_the_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Settings.env_names() if f"`{name}`" not in readme]
    assert not missing, f"settings missing from the README's table: {missing}"


def test_prometheus_scrapes_the_service_and_grafana_reads_prometheus() -> None:
    compose = _compose()["services"]
    scrape = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in compose and job["metrics_path"] == "/metrics"
    assert f"--port {port}" in " ".join(compose[host]["command"])
    for service in ("prometheus", "grafana"):
        for volume in compose[service]["volumes"]:
            source = volume.split(":")[0]
            assert (INFRA / source).exists(), f"{service} mounts {source}, which is missing"
    (source,) = yaml.safe_load(
        (INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((INFRA / "grafana" / "dashboards" / "tickets.json").read_text())
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert uids == {source["uid"]}


def test_every_metric_grafana_charts_is_one_the_service_exposes() -> None:
    from core.records import StoredDriftReport, StoredReport
    from serving import metrics

    report = StoredDriftReport(
        "r",
        "2026-11-30T10:00:00+00:00",
        "3",
        None,
        True,
        0.5,
        None,
        StoredReport.model_validate(
            {"tests": [{"name": "t", "statistic": 1.0, "threshold": 0.5, "verdict": "drift"}]}
        ),
    )
    exposed = {family.name for family in metrics.REGISTRY.collect()}
    exposed |= {family.name for family in metrics._DriftCollector(report).collect()}
    dashboard = (INFRA / "grafana" / "dashboards" / "tickets.json").read_text()
    charted = set(re.findall(r"tickets_\w+", dashboard))
    assert charted, "the dashboard charts the service's metrics"
    suffixes = re.compile(r"_(bucket|count|sum|total)$")
    unknown = {name for name in charted if suffixes.sub("", name) not in exposed}
    assert not unknown, f"charted but not exposed: {sorted(unknown)}"
