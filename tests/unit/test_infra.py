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
    for anchor in ("x-tickets-env", "x-api-env", "x-webhooks-env"):
        settings = _settings_from(compose[anchor])
        assert settings.artifact_store_url().startswith("s3://")
        assert settings.prediction_log_url is not None
        assert settings.prediction_log_url.get_secret_value().startswith("postgresql://")
    for name in ("worker", "bootstrap"):
        assert compose["services"][name]["environment"] == environment
    assert compose["services"]["api"]["environment"] == compose["x-api-env"]
    assert compose["services"]["webhooks"]["environment"] == compose["x-webhooks-env"]
    assert compose["services"]["mlflow"]["environment"].items() >= environment.items()


#: Credentials that let a process change models, run code or read everything: none of them may
#: reach the public prediction service.
PRIVILEGED = (
    "TICKETS_OPTUNA_STORAGE",
    "TICKETS_STUDY_CACHE_KEY",
    "TICKETS_MLFLOW_TRACKING_URI",
    "TICKETS_PREFECT_API_AUTH_STRING",
    "TICKETS_PREFECT_API_URL",
    "TICKETS_WEBHOOK_SECRETS",
    "TICKETS_DASK_ADDRESS",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_API_URL",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MINIO_ROOT_PASSWORD",
)


def test_the_public_api_holds_no_credential_it_does_not_use() -> None:
    """One Secret with every credential was loaded by every pod, the public API's included, and
    in compose the API held the MinIO root and MLflow admin credentials."""
    compose = _compose()
    api = compose["services"]["api"]["environment"]
    assert not [name for name in PRIVILEGED if name in api]
    assert "MINIO_ROOT" not in json.dumps(api) and "MINIO_READER_PASSWORD" in json.dumps(api)
    assert api["TICKETS_SERVE_ROUTES"] == "api"
    assert compose["services"]["webhooks"]["environment"]["TICKETS_SERVE_ROUTES"] == "webhooks"
    setup = " ".join(compose["services"]["minio-setup"]["command"])
    assert "policy attach local readonly" in setup, "the reader can only read"
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in _manifests()}
    (container,) = manifests[("Deployment", "tickets-api")]["spec"]["template"]["spec"][
        "containers"
    ]
    names: set[str] = set()
    for source in container["envFrom"]:
        kind, ref = (
            ("ConfigMap", source["configMapRef"])
            if "configMapRef" in source
            else (
                "Secret",
                source["secretRef"],
            )
        )
        manifest = manifests[(kind, ref["name"])]
        names |= set(manifest.get("data") or manifest.get("stringData") or {})
    assert names and not [name for name in PRIVILEGED if name in names]
    secrets = [name for kind, name in manifests if kind == "Secret"]
    assert len(secrets) >= 4, "a secret per component"
    users: dict[str, set[str]] = {}
    for (kind, name), manifest in manifests.items():
        if kind == "Deployment":
            for c in manifest["spec"]["template"]["spec"]["containers"]:
                for source in c.get("envFrom", []):
                    if "secretRef" in source:
                        users.setdefault(source["secretRef"]["name"], set()).add(name)
    assert all(len(deployments) <= 2 for deployments in users.values()), users


def test_the_public_api_is_not_admitted_to_dask() -> None:
    """A Dask client runs any code on the workers, and Dask has no authentication here."""
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in _manifests()}
    policy = manifests[("NetworkPolicy", "tickets-dask")]
    admitted = [peer["podSelector"]["matchLabels"] for peer in policy["spec"]["ingress"][0]["from"]]
    for name in ("tickets-api", "tickets-webhooks"):
        labels = manifests[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert not any(selector.items() <= labels.items() for selector in admitted), name
    worker = manifests[("Deployment", "tickets-worker")]["spec"]["template"]["metadata"]["labels"]
    assert any(selector.items() <= worker.items() for selector in admitted), "the worker is"
    flow_run = _kubernetes_pool()["variables"]["properties"]["labels"]["default"]
    assert any(selector.items() <= flow_run.items() for selector in admitted), "flow runs too"
    egress = manifests[("NetworkPolicy", "tickets-api-egress")]["spec"]["egress"]
    ports = {p["port"] for rule in egress for p in rule["ports"]}
    assert 8786 not in ports and 4200 not in ports and 5000 not in ports


def test_every_compose_service_is_hardened() -> None:
    """No service dropped capabilities or had limits."""
    for name, service in _compose()["services"].items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("mem_limit") and service.get("cpus"), name
        assert "/tmp" in service.get("tmpfs", []), name


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


def test_the_settings_reference_lists_every_setting_and_the_docs_link_it() -> None:
    """The reference is generated from Settings at every documentation build."""
    from deployments.settings_reference import render

    reference = render()
    missing = [name for name in Settings.env_names() if f"`{name}`" not in reference]
    assert not missing, f"settings missing from the reference: {missing}"
    assert all(line.count("|") >= 4 for line in reference.splitlines() if line.startswith("| `"))
    readme = (ROOT / "README.md").read_text()
    assert "docs/reference/settings.md" in readme or "make docs" in readme
    assert len(readme.splitlines()) < 300, "the README stays short: the rest is in docs/"


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
    for name in ("worker", "bootstrap"):
        environment = services[name]["environment"]
        assert "PREFECT_API_AUTH_STRING" in environment, f"{name} signs in to Prefect"
        assert "MLFLOW_TRACKING_PASSWORD" in environment, f"{name} signs in to MLflow"
    assert "TICKETS_PREFECT_API_AUTH_STRING" in services["webhooks"]["environment"]
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
    assert {m["metadata"]["name"] for m in deployments} == {
        "tickets-api",
        "tickets-webhooks",
        "tickets-worker",
        "tickets-kubernetes-worker",
        "tickets-dask-scheduler",
        "tickets-dask-worker",
    }
    pool = json.loads((INFRA / "k8s" / "work-pool.json").read_text())
    flow_run = pool["job_configuration"]["job_manifest"]["spec"]["template"]
    for deployment in [
        *deployments,
        {"metadata": {"name": "flow run"}, "spec": {"template": flow_run}},
    ]:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        # Only the Kubernetes worker talks to the API (it creates the flow runs' Jobs).
        talks_to_api = deployment["metadata"]["name"] == "tickets-kubernetes-worker"
        assert pod["automountServiceAccountToken"] is talks_to_api
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
        {"app.kubernetes.io/name": "tickets-api"},
        {"app.kubernetes.io/name": "tickets-webhooks"},
        {"app.kubernetes.io/component": "dask"},
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


def _kubernetes_pool() -> dict[str, Any]:
    return dict(json.loads((INFRA / "k8s" / "work-pool.json").read_text()))


def _kubernetes_deployments() -> list[dict[str, Any]]:
    prefect = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return [d for d in prefect["deployments"] if d["work_pool"]["name"] == "tickets-kubernetes"]


def test_the_kubernetes_work_pool_template_resolves_into_a_valid_job() -> None:
    """Every placeholder of the base job template is a variable, the worker's own variables
    are all there, and with prefect.yaml's job variables it resolves (prefect-kubernetes' own
    model) into a Job of the project's image, settings and locked-down pod."""
    from prefect.utilities.templating import apply_values, find_placeholders
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    pool = _kubernetes_pool()
    variables = pool["variables"]["properties"]
    used = {placeholder.name for placeholder in find_placeholders(pool["job_configuration"])}
    assert used <= set(variables)
    assert set(KubernetesWorker.get_default_base_job_template()["variables"]["properties"]) <= set(
        variables
    )
    deployments = _kubernetes_deployments()
    assert {d["name"] for d in deployments} == {"kubernetes-manual", "kubernetes-every-six-hours"}
    config = {
        m["metadata"]["name"]: m for m in _manifests() if m["kind"] in ("ConfigMap", "Secret")
    }
    for deployment in deployments:
        job_variables = deployment["work_pool"]["job_variables"]
        assert set(job_variables) <= set(variables)
        defaults = {name: v["default"] for name, v in variables.items() if "default" in v}
        resolved = apply_values(pool["job_configuration"], {**defaults, **job_variables})
        job = KubernetesWorkerJobConfiguration(**resolved).job_manifest
        assert "{{" not in json.dumps(job)
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == f"tickets:{version('tickets')}"
        assert job["metadata"]["namespace"] == "tickets"
        # The image's entrypoint is `tickets`: /usr/bin/env runs the worker's command as given.
        assert container["command"] == ["/usr/bin/env"] and container["workingDir"] == "/tmp"
        sources = [next(iter(source.values()))["name"] for source in container["envFrom"]]
        assert sources == ["tickets-config", "tickets-flows-secrets"] and set(sources) <= set(
            config
        )
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert {"/tmp", "/app/.tickets"} <= mounts
    workers = [m for m in _manifests() if m["metadata"]["name"] == "tickets-kubernetes-worker"]
    args = next(m for m in workers if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert _after("--pool", args["containers"][0]["args"]) == "tickets-kubernetes"
    assert _after("--type", args["containers"][0]["args"]) == "kubernetes"


def test_kubernetes_deployments_push_and_pull_their_code_with_prefect_aws() -> None:
    """The steps exist in the locked prefect-aws and accept the arguments prefect.yaml gives
    them; the pull step reads where the push step wrote."""
    import inspect
    from importlib import import_module

    for deployment in _kubernetes_deployments():
        steps = [*deployment["push"], *deployment["pull"]]
        assert [next(iter(step)) for step in steps] == [
            "prefect_aws.deployments.steps.push_to_s3",
            "prefect_aws.deployments.steps.pull_from_s3",
        ]
        for step in steps:
            ((path, arguments),) = step.items()
            module, name = path.rsplit(".", 1)
            function = getattr(import_module(module), name)
            given = {k: v for k, v in arguments.items() if k not in ("id", "requires")}
            inspect.signature(function).bind(**given)
            assert arguments["requires"] == f"prefect-aws=={version('prefect-aws')}"
        push, pull = deployment["push"][0], deployment["pull"][0]
        push_id = next(iter(push.values()))["id"]
        pulled = next(iter(pull.values()))
        assert pulled["bucket"] == "{{ " + push_id + ".bucket }}"
        assert pulled["folder"] == "{{ " + push_id + ".folder }}"


def test_the_dask_cluster_is_where_the_settings_point_and_its_commands_parse() -> None:
    from distributed.cli.dask_scheduler import main as scheduler_cli
    from distributed.cli.dask_worker import main as worker_cli

    manifests = {(m["kind"], m["metadata"]["name"]): m for m in _manifests()}
    config = manifests[("ConfigMap", "tickets-config")]["data"]
    secret = manifests[("Secret", "tickets-dask-secrets")]["stringData"]
    storage = {"TICKETS_OPTUNA_STORAGE": secret["TICKETS_OPTUNA_STORAGE"]}
    settings = _settings_from(
        {k: v for k, v in config.items() if k.startswith("TICKETS_")} | storage
    )
    assert settings.scale.task_runner == "dask" and settings.scale.workers_per_study >= 2
    assert str(settings.scale.storage_url()).startswith("postgresql://")
    address = str(settings.scale.dask_address)
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    service = manifests[("Service", host.split(".")[0])]
    assert [p["port"] for p in service["spec"]["ports"]] == [int(port)]
    scheduler = manifests[("Deployment", "tickets-dask-scheduler")]
    (container,) = scheduler["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["dask"] and container["args"][0] == "scheduler"
    scheduler_params = scheduler_cli.make_context("dask scheduler", container["args"][1:]).params
    assert int(scheduler_params["port"]) == int(port)
    worker = manifests[("Deployment", "tickets-dask-worker")]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    params = worker_cli.make_context("dask worker", container["args"][1:]).params
    assert params["scheduler"].endswith(f"tickets-dask-scheduler:{port}")
    assert params["nthreads"] == 1 and int(params["n_workers"]) == 1
    policy = manifests[("NetworkPolicy", "tickets-dask")]
    opened = {p["port"] for p in policy["spec"]["ingress"][0]["ports"]}
    assert opened == {int(port), int(params["worker_port"]), int(params["nanny_port"])}
    # Tasks are pickled calls of the project's code: the workers run the project's image.
    images = {
        c["image"] for d in (scheduler, worker) for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"tickets:{version('tickets')}"}


def test_make_deploy_compose_and_the_stack_deploy_the_process_pool_deployments() -> None:
    from deployments.stack import PROCESS_DEPLOYMENTS

    prefect = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    process = {
        d["name"] for d in prefect["deployments"] if d["work_pool"]["name"] == "tickets-process"
    }
    assert set(PROCESS_DEPLOYMENTS) == process
    makefile = (ROOT / "Makefile").read_text()
    bootstrap = _compose()["services"]["bootstrap"]["command"][0]
    for text in (makefile, bootstrap):
        assert set(re.findall(r"--name (\S+)", text)) == process
        assert "deploy --all" not in text
