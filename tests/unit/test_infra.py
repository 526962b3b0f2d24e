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
_REQUIRED = re.compile(r"\$\{\w+:\?[^}]*\}")


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
    """Settings built from the TICKETS_* entries, with compose's ${VAR:-default} resolved and
    each ${VAR:?required} standing for a value the operator sets."""
    values: dict[str, Any] = {
        key.removeprefix("TICKETS_").lower(): _REQUIRED.sub(
            "a-required-secret", _DEFAULTED.sub(r"\1", str(value))
        )
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
    for name in ("api", "worker", "bootstrap"):
        assert compose["services"][name]["environment"] == environment
    assert compose["services"]["mlflow"]["environment"].items() >= environment.items()


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


# Secure by default: what a shared host must never get from this project's stack.

#: Variable or setting names whose values are secrets.
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|AUTH_STRING|API_KEY|_KEYS$|TOKEN", re.I)
_SUBSTITUTION = re.compile(r"\$\{(\w+)(:?[-?])([^}]*)\}")
_LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")


def published_beyond_loopback(compose: dict[str, Any]) -> list[str]:
    """Ports a compose file publishes on other interfaces than loopback ("service port")."""
    found = []
    for name, service in compose.get("services", {}).items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                host_ip, published = port.get("host_ip", ""), port.get("published")
            else:
                parts = str(port).rsplit(":", 2)
                host_ip = parts[0] if len(parts) == 3 else ""
                published = parts[-2] if len(parts) >= 2 else parts[-1]
            if host_ip not in _LOOPBACK:
                found.append(f"{name} {published}")
    return found


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every (path, string) in a parsed YAML document."""
    if isinstance(node, dict):
        return [pair for key, value in node.items() for pair in _strings(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [pair for i, value in enumerate(node) for pair in _strings(value, f"{path}[{i}]")]
    return [(path, str(node))] if node is not None else []


def default_secrets(document: dict[str, Any]) -> list[str]:
    """Secrets with a value in the file: a ${SECRET:-default} with a default, or a literal value
    under a secret's name (``POSTGRES_PASSWORD: tickets``)."""
    found = []
    for path, text in _strings(document):
        for name, kind, default in _SUBSTITUTION.findall(text):
            if _SECRET_NAME.search(name) and kind.endswith("-") and default:
                found.append(f"{path}: ${{{name}{kind}{default}}}")
        key = path.rsplit(".", 1)[-1]
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", key) and _SECRET_NAME.search(key) and text:
            if "${" in text or text.endswith("CHANGE-ME"):
                continue
            found.append(f"{path}: a literal value")
    return found


def floating_images(images: list[str]) -> list[str]:
    """Images without a pinned version: no tag, ``latest``, or a tag without a version number
    (a digest pins too)."""
    found = []
    for image in images:
        if "@sha256:" in image:
            continue
        tag = image.rpartition(":")[2] if ":" in image.split("/")[-1] else ""
        if not tag or tag == "latest" or not re.search(r"\d+\.\d+|RELEASE\.\d", tag):
            found.append(image)
    return found


class _ComposeLoader(yaml.SafeLoader):
    """Reads compose's own tags (!override, !reset) as plain YAML."""


_ComposeLoader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: (
        loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_scalar(node)
    ),
)


def _compose_file(name: str) -> dict[str, Any]:
    return dict(yaml.load((INFRA / name).read_text(), Loader=_ComposeLoader))


def test_the_compose_stack_publishes_nothing_beyond_this_host() -> None:
    assert published_beyond_loopback(_compose()) == []
    public = _compose_file("docker-compose.public.yml")
    assert published_beyond_loopback(public) == ["api 8000"], "the override opens the API only"


def test_the_compose_stack_has_no_default_secret_and_requires_each_one() -> None:
    compose = _compose()
    assert default_secrets(compose) == []
    required = {
        name
        for _, text in _strings(compose)
        for name, kind, _ in _SUBSTITUTION.findall(text)
        if kind == ":?"
    }
    from deployments.compose_env import REQUIRED

    assert required == set(REQUIRED), "compose_env generates exactly what compose requires"
    services = compose["services"]
    assert services["prefect"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"].startswith(
        "${PREFECT_API_AUTH_STRING:?"
    )
    for name in ("worker", "bootstrap", "api"):
        environment = services[name]["environment"]
        assert "PREFECT_API_AUTH_STRING" in environment, f"{name} signs in to Prefect"
        assert "TICKETS_PREFECT_API_AUTH_STRING" in environment, f"{name}'s webhooks too"
        assert "MLFLOW_TRACKING_PASSWORD" in environment, f"{name} signs in to MLflow"
    assert "--app-name=basic-auth" in services["mlflow"]["command"]
    assert "GF_SECURITY_ADMIN_PASSWORD" in services["grafana"]["environment"]


def test_every_image_is_pinned() -> None:
    compose = _compose()
    images = [service["image"] for service in compose["services"].values() if "image" in service]
    manifests = _manifests()
    images += [
        container["image"]
        for manifest in manifests
        if manifest["kind"] == "Deployment"
        for container in manifest["spec"]["template"]["spec"]["containers"]
    ]
    assert floating_images(images) == []
    own = {image for image in images if image.startswith("tickets:")}
    assert own == {f"tickets:{version('tickets')}"}, "the project's image carries its version"


def test_the_checks_catch_a_published_admin_port_a_default_secret_and_a_floating_tag() -> None:
    compose = _compose()
    compose["services"]["prefect"]["ports"] = ["4200:4200"]
    compose["services"]["mlflow"]["ports"] = [{"published": 5000, "target": 5000}]
    assert published_beyond_loopback(compose) == ["prefect 4200", "mlflow 5000"]
    compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "${POSTGRES_PASSWORD:-x}"
    compose["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] = "tickets"
    assert len(default_secrets(compose)) == 2
    assert floating_images(["minio/minio:latest", "minio/mc", "postgres:16-alpine"]) == [
        "minio/minio:latest",
        "minio/mc",
        "postgres:16-alpine",
    ]
    assert floating_images(["postgres:16.9-alpine", "a/b@sha256:" + "0" * 64]) == []


def test_env_files_are_ignored_by_git_and_docker() -> None:
    for ignore in (".gitignore", ".dockerignore"):
        assert ".env" in (ROOT / ignore).read_text().split(), ignore


def test_kubernetes_pods_are_locked_down() -> None:
    manifests = _manifests()
    deployments = [m for m in manifests if m["kind"] == "Deployment"]
    assert {m["metadata"]["name"] for m in deployments} == {"tickets-api", "tickets-worker"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            mounted = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert {"/tmp", "/app/.tickets"} <= mounted, "somewhere to write"
    (api,) = [m for m in deployments if m["metadata"]["name"] == "tickets-api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if not p["spec"].get("ingress")]
    assert deny and deny[0]["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/part-of": "tickets"
    }
    allowed = [p for p in policies if p["spec"].get("ingress")]
    assert [p["spec"]["podSelector"]["matchLabels"] for p in allowed] == [
        {"app.kubernetes.io/name": "tickets-api"}
    ]
    assert allowed[0]["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert default_secrets({"k8s": manifests}) == [], "secrets are CHANGE-ME placeholders"


def test_compose_env_writes_every_required_secret_once_and_owner_only(tmp_path: Path) -> None:
    import stat

    from core.settings import Settings
    from deployments.compose_env import REQUIRED, main

    target = tmp_path / ".env"
    assert main(["--out", str(target)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    values = dict(
        line.split("=", 1) for line in target.read_text().splitlines() if not line.startswith("#")
    )
    assert set(REQUIRED) <= set(values) and all(len(values[name]) >= 24 for name in REQUIRED)
    assert ":" in values["PREFECT_API_AUTH_STRING"]
    Settings(
        admin_api_key=values["TICKETS_ADMIN_API_KEY"],
        label_api_keys=values["TICKETS_LABEL_API_KEYS"],
        webhook_secrets=values["TICKETS_WEBHOOK_SECRETS"],
    )  # the project's own keys pass its checks
    before = target.read_text()
    assert main(["--out", str(target)]) == 1 and target.read_text() == before, "never overwrites"
