"""The Helm chart: lint, render every supported shape, validate each object against the Kubernetes schemas, and
check what matters in it (security, least privilege, transport, the service's own config)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from keptn_gitops_service.config import model
from keptn_gitops_service.config.loader import parse_config

Obj = dict[str, Any]
Helm = Any  # test/chart/conftest.py's Helm (conftest modules are not imported by name)
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart"
VALUES_DIR = Path(__file__).resolve().parent / "values"
RELEASE = "gitops"
NAMESPACE = "keptn"
# The chart's kubeVersion floor and the newest Kubernetes kubernetes-validate knows.
VALIDATE_AGAINST = ("1.25", "1.37")

# name -> values files (in test/chart/values/), each rendered on top of the chart's values.yaml. The chart's own
# values have no rule and do not render (test_default_values_refuse_to_render_without_a_rule); the Flux-only setup
# (flux.yaml) is the base of the shapes that are about something else.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "flux": ("flux.yaml",),
    "argocd": ("argocd.yaml",),
    "argocd-rest": ("argocd-rest.yaml",),
    "distributor": ("flux.yaml", "distributor.yaml"),
    "cluster-wide": ("flux.yaml", "cluster-wide.yaml"),
    "namespaced": ("flux.yaml", "namespaced.yaml"),
    "persistence": ("flux.yaml", "persistence.yaml"),
    "observability": ("flux.yaml", "observability.yaml"),
    "full-config": ("full-config.yaml",),
    "webhooks": ("flux.yaml", "webhooks.yaml"),
    "replicas": ("flux.yaml", "replicas.yaml"),
    "cdevents": ("flux.yaml", "cdevents.yaml"),
    "clusters": ("clusters.yaml",),
}
FULLNAME = f"{RELEASE}-keptn-gitops-service"
CONFIG_PATH = "/etc/keptn-gitops-service/config.yaml"
STATE_DIR = "/var/lib/keptn-gitops-service"
DEFAULT_TOPICS = (
    "sh.keptn.event.deployment.triggered,sh.keptn.event.rollback.triggered,sh.keptn.event.release.triggered"
)

# Exactly what each wait needs on the Kubernetes API: read what it waits on, patch only to ask for a reconcile
# (GitRepositories and HelmReleases: reconcile.fluxcd.io/requestedAt; Applications: the refresh annotation, a sync).
KUSTOMIZATION_WAIT = {
    ("kustomize.toolkit.fluxcd.io", "kustomizations"): {"get", "list", "watch"},
    ("source.toolkit.fluxcd.io", "gitrepositories"): {"patch"},
}
HELMRELEASE_WAIT = {("helm.toolkit.fluxcd.io", "helmreleases"): {"get", "list", "watch", "patch"}}
ARGOCD_WAIT = {("argoproj.io", "applications"): {"get", "list", "watch", "patch"}}
ARGOCD_READ_ONLY = {("argoproj.io", "applications"): {"get", "list", "watch"}}
FLUX_NAMESPACES = ["sockshop-dev", "sockshop-production"]  # flux.yaml's rbac.namespaces
STANDARD_LABELS = {
    "app.kubernetes.io/name": "keptn-gitops-service",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/version": "0.1.0",
    "app.kubernetes.io/managed-by": "Helm",
    "helm.sh/chart": "keptn-gitops-service-0.1.0",
}


def _values_args(values: tuple[str | Path, ...], sets: tuple[str, ...]) -> list[str]:
    args: list[str] = []
    for item in values:
        args += ["--values", str(VALUES_DIR / item)]
    for item in sets:
        args += ["--set", item]
    return args


def template(helm: Helm, values: tuple[str | Path, ...] = ("flux.yaml",), sets: tuple[str, ...] = ()) -> Any:
    return helm.run(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        helm.kube_version,
        *_values_args(values, sets),
    )


@pytest.fixture(scope="session")
def render(helm: Helm) -> Any:
    """``render(scenario)`` -> the scenario's rendered objects (rendered once per session)."""
    cache: dict[str, list[Obj]] = {}

    def _render(scenario: str) -> list[Obj]:
        if scenario not in cache:
            proc = template(helm, SCENARIOS[scenario])
            if proc.returncode != 0:
                pytest.fail(f"helm template ({scenario}) failed:\n{proc.stderr}")
            cache[scenario] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
        return cache[scenario]

    return _render


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str) -> Obj:
    found = of_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_spec(objs: list[Obj]) -> Obj:
    spec: Obj = one(objs, "Deployment")["spec"]["template"]["spec"]
    return spec


def containers(objs: list[Obj]) -> dict[str, Obj]:
    return {c["name"]: c for c in pod_spec(objs)["containers"]}


def service_container(objs: list[Obj]) -> Obj:
    return containers(objs)["keptn-gitops-service"]


def env(container: Obj) -> dict[str, Obj]:
    names = [e["name"] for e in container.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env vars in {container['name']}: {names}"
    return {e["name"]: e for e in container.get("env", [])}


def env_values(container: Obj) -> dict[str, str]:
    return {name: e["value"] for name, e in env(container).items() if "value" in e}


def volumes(objs: list[Obj]) -> dict[str, Obj]:
    return {v["name"]: v for v in pod_spec(objs)["volumes"]}


def mounts(container: Obj) -> dict[str, Obj]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def rules_as_sets(rules: list[Obj]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def rendered_config(objs: list[Obj]) -> str:
    text: str = one(objs, "ConfigMap")["data"]["config.yaml"]
    return text


def values_file(name: str) -> Obj:
    data: Obj = yaml.safe_load((VALUES_DIR / name).read_text(encoding="utf-8"))
    return data


def objects(proc: Any) -> list[Obj]:
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def roles_by_namespace(objs: list[Obj]) -> dict[str, dict[tuple[str, str], set[str]]]:
    return {r["metadata"]["namespace"]: rules_as_sets(r["rules"]) for r in of_kind(objs, "Role")}


# ---- lint and schema validation of every scenario ----


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_passes_strictly(helm: Helm, scenario: str) -> None:
    proc = helm.run(
        "lint", "--strict", str(CHART), "--kube-version", helm.kube_version, *_values_args(SCENARIOS[scenario], ())
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    assert "[ERROR]" not in proc.stdout and "[WARNING]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_is_valid_for_kubernetes(render: Any, scenario: str) -> None:
    objs = render(scenario)
    assert objs, "nothing rendered"
    problems: list[str] = []
    validated = 0
    for obj in objs:
        if obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["kind"] == "ServiceMonitor":
            # A Prometheus Operator CRD: kubernetes-validate has no schema for it. Its fields are asserted in
            # test_service_monitor_scrapes_the_http_port instead.
            continue
        for version in VALIDATE_AGAINST:
            where = f"Kubernetes {version}: {obj['kind']}/{obj['metadata']['name']}"
            try:
                # strict: unknown fields (typos) are errors too.
                kubernetes_validate.validate(obj, version, strict=True)
                validated += 1
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{where}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"{where}: {exc.message}")
    assert not problems, "\n".join(problems)
    assert validated >= len(VALIDATE_AGAINST) * (len(objs) - len(of_kind(objs, "ServiceMonitor")))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_has_the_standard_labels_and_namespace(render: Any, scenario: str) -> None:
    for obj in render(scenario):
        labels = obj["metadata"].get("labels", {})
        assert STANDARD_LABELS.items() <= labels.items(), f"{obj['kind']}: {labels}"
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"].get("namespace"), f"{obj['kind']} {obj['metadata']['name']} has no namespace"


def test_values_schema_is_draft07_and_accepts_every_scenario() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert not list(validator.iter_errors(defaults))
    for files in SCENARIOS.values():
        for name in files:
            merged = _merge(defaults, values_file(name))
            errors = [e.message for e in validator.iter_errors(merged)]
            assert not errors, f"{name}: {errors}"


def _merge(base: Any, override: Any) -> Any:
    """Helm's values merge: maps merge key by key, everything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in override.items()}}
    return override


def test_chart_metadata_matches_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "keptn-gitops-service"
    assert chart["appVersion"] == "0.1.0"
    setup_cfg = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert f"version = {chart['appVersion']}\n" in setup_cfg, "Chart appVersion and setup.cfg version differ"


# ---- the chart's own values: no rule, no installation ----


def test_default_values_refuse_to_render_without_a_rule(helm: Helm) -> None:
    """Out of the box the chart would otherwise claim every trigger of every project next to helm-service."""
    proc = template(helm, values=())
    assert proc.returncode != 0, proc.stdout
    assert "config.rules is empty" in proc.stderr, proc.stderr
    assert "Set config.repositories and config.rules in your values" in proc.stderr
    # helm lint reports a template's fail() and still passes the chart (chart repositories lint the defaults)
    lint = helm.run("lint", "--strict", str(CHART), "--kube-version", helm.kube_version)
    assert "Fail: config.rules is empty" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert defaults["config"]["rules"] == [] and defaults["config"]["repositories"] == []


def test_rules_without_repositories_are_refused(helm: Helm, tmp_path: Path) -> None:
    config = values_file("flux.yaml")["config"]
    config["repositories"] = []
    values = tmp_path / "no-repositories.yaml"
    values.write_text(yaml.safe_dump({"config": config}), encoding="utf-8")
    proc = template(helm, ("flux.yaml", values))
    assert proc.returncode != 0 and "config.repositories is empty" in proc.stderr, proc.stderr


# ---- a Flux-only installation ----


def test_flux_renders_exactly_the_namespaced_objects(render: Any) -> None:
    kinds = sorted(o["kind"] for o in render("flux"))
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Service", "ServiceAccount"] + ["Role", "RoleBinding"] * 2
    )


def test_service_runs_the_run_command_with_the_mounted_config(render: Any) -> None:
    objs = render("flux")
    container = service_container(objs)
    assert [*container["command"], *container["args"]] == ["keptn-gitops-service", "run", "--config", CONFIG_PATH]
    mount = mounts(container)[CONFIG_PATH]
    assert mount["readOnly"] is True and mount["subPath"] == "config.yaml"
    assert volumes(objs)[mount["name"]]["configMap"]["name"] == one(objs, "ConfigMap")["metadata"]["name"]
    assert container["image"] == "ghcr.io/keptn-contrib/keptn-gitops-service:0.1.0"
    annotations = one(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/config"]) == 64, "config changes must roll the pods"


def test_direct_nats_mode_is_the_default(render: Any) -> None:
    objs = render("flux")
    assert list(containers(objs)) == ["keptn-gitops-service"], "no distributor sidecar by default"
    values = env_values(service_container(objs))
    assert values["KEPTN_TRANSPORT"] == "nats"
    assert values["NATS_URL"] == "nats://keptn-nats:4222"
    assert values["PUBSUB_TOPIC"] == DEFAULT_TOPICS
    assert values["PUBSUB_GROUP"] == "keptn-gitops-service"
    assert values["KEPTN_GITOPS_STATE_DIR"] == STATE_DIR
    assert values["LOG_LEVEL"] == "info"
    assert "KEPTN_API_ENDPOINT" not in values


def test_keptn_api_and_image_digest_in_direct_mode(helm: Helm) -> None:
    digest = "sha256:" + "ab" * 32
    sets = (
        "keptnApi.endpoint=http://api-gateway-nginx.keptn/api",
        "keptnApi.existingSecret=keptn-api",
        f"image.digest={digest}",
    )
    container = service_container(objects(template(helm, sets=sets)))
    assert container["image"] == f"ghcr.io/keptn-contrib/keptn-gitops-service@{digest}"
    variables = env(container)
    assert variables["KEPTN_API_ENDPOINT"]["value"] == "http://api-gateway-nginx.keptn/api"
    assert variables["KEPTN_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "keptn-api", "key": "keptn-api-token"}


@pytest.mark.parametrize("scenario", ["flux", "distributor"])
def test_pod_facts_come_from_the_downward_api(render: Any, scenario: str) -> None:
    expected = {
        "K8S_NAMESPACE": "metadata.namespace",
        "K8S_POD_NAME": "metadata.name",
        "K8S_NODE_NAME": "spec.nodeName",
    }
    for container in containers(render(scenario)).values():
        variables = env(container)
        for name, field in expected.items():
            assert variables[name]["valueFrom"]["fieldRef"]["fieldPath"] == field, (container["name"], name)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_restricted_security_context(render: Any, scenario: str) -> None:
    objs = render(scenario)
    pod = pod_spec(objs)["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers(objs).values():
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, container["name"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
        assert sc["allowPrivilegeEscalation"] is False, container["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        assert "privileged" not in sc or sc["privileged"] is False
    # read-only root: /tmp and the state directory are the writable places
    service = service_container(objs)
    writable = {path: volumes(objs)[m["name"]] for path, m in mounts(service).items() if not m.get("readOnly")}
    assert writable["/tmp"] == {"name": "tmp", "emptyDir": {}}
    assert STATE_DIR in writable


def test_probes_and_http_port(render: Any) -> None:
    objs = render("flux")
    container = service_container(objs)
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = one(objs, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_resources_are_set(render: Any) -> None:
    for container in containers(render("distributor")).values():
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"], container["name"]
        assert resources["limits"]["memory"], container["name"]


def test_state_survives_helm_upgrade_by_default(render: Any) -> None:
    """In-flight deployments are recorded in the state directory: by default it is a claim the release keeps, and the
    old pod lets go of the ReadWriteOnce volume before the new one starts."""
    objs = render("flux")
    claim = one(objs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == f"{FULLNAME}-state"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "storageClassName" not in claim["spec"], "the cluster's default StorageClass"
    state = mounts(service_container(objs))[STATE_DIR]
    assert volumes(objs)[state["name"]]["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    assert one(objs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert env_values(service_container(objs))["KEPTN_GITOPS_STATE_DIR"] == STATE_DIR


def test_state_dir_is_an_empty_dir_without_persistence(helm: Helm) -> None:
    objs = objects(template(helm, sets=("persistence.enabled=false",)))
    state = mounts(service_container(objs))[STATE_DIR]
    assert volumes(objs)[state["name"]] == {"name": state["name"], "emptyDir": {}}
    assert not of_kind(objs, "PersistentVolumeClaim")
    assert "strategy" not in one(objs, "Deployment")["spec"]


def test_service_account_is_used_and_bound(render: Any) -> None:
    objs = render("flux")
    account = one(objs, "ServiceAccount")["metadata"]["name"]
    assert pod_spec(objs)["serviceAccountName"] == account == FULLNAME
    assert pod_spec(objs)["automountServiceAccountToken"] is True


# ---- config.yaml ----


@pytest.mark.parametrize("scenario", ["flux", "argocd", "argocd-rest", "full-config"])
def test_rendered_config_loads_with_the_services_own_loader(render: Any, scenario: str) -> None:
    text = rendered_config(render(scenario))
    config = parse_config(text, f"configmap[{scenario}]")
    assert config.rules and config.repositories
    values = values_file(SCENARIOS[scenario][0])
    assert yaml.safe_load(text) == values["config"], "config.yaml must be .Values.config verbatim"


def test_full_config_carries_token_and_ssh_auth(render: Any) -> None:
    config = parse_config(rendered_config(render("full-config")), "full-config")
    auths = {repo.name: repo.auth for repo in config.repositories}
    assert auths["fleet"] == model.TokenAuth(token_env="FLEET_TOKEN", username="keptn-bot")
    assert isinstance(auths["legacy"], model.SshAuth)
    assert auths["legacy"].private_key_file == "/etc/keptn-gitops-service/git/ssh-privatekey"
    assert isinstance(auths["charts"], model.TokenAuth)


def test_tokens_come_from_the_git_secret_and_ssh_keys_are_mounted(render: Any) -> None:
    objs = render("full-config")
    container = service_container(objs)
    variables = env(container)
    assert variables["FLEET_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "gitops-credentials", "key": "fleet-token"}
    assert variables["GIT_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "gitops-credentials", "key": "GIT_TOKEN"}
    assert variables["ARGOCD_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "argocd-api", "key": "token"}
    # a repository's forge: its API token and webhook secret from the same Secret
    for forge_variable in ("FORGE_TOKEN", "FORGE_WEBHOOK_SECRET"):
        assert variables[forge_variable]["valueFrom"]["secretKeyRef"] == {
            "name": "gitops-credentials",
            "key": forge_variable,
        }
    mount = mounts(container)["/etc/keptn-gitops-service/git"]
    assert mount["readOnly"] is True
    secret = volumes(objs)[mount["name"]]["secret"]
    assert secret["secretName"] == "gitops-credentials"
    assert secret["defaultMode"] == 0o440
    assert pod_spec(objs)["securityContext"]["fsGroup"] == 10001, "the key file must be readable by the group"
    # no credential is ever a literal value in the manifest
    for name, variable in variables.items():
        if "TOKEN" in name or "SECRET" in name:
            assert "value" not in variable, name


def test_no_credentials_without_auth(render: Any) -> None:
    objs = render("flux")
    assert not [e for e in env(service_container(objs)).values() if "secretKeyRef" in e.get("valueFrom", {})]
    assert not [v for v in volumes(objs).values() if "secret" in v]


# ---- distributor mode ----


def test_distributor_sidecar_is_configured_like_helm_service(render: Any) -> None:
    objs = render("distributor")
    pods = containers(objs)
    assert list(pods) == ["keptn-gitops-service", "distributor"]
    distributor = pods["distributor"]
    assert distributor["image"] == "docker.io/keptn/distributor:1.4.4"
    values = env_values(distributor)
    assert values["PUBSUB_URL"] == "nats://keptn-nats:4222"
    assert values["PUBSUB_TOPIC"] == values_file("distributor.yaml")["pubsub"]["topic"]
    assert values["PUBSUB_RECIPIENT"] == "127.0.0.1"
    assert values["PUBSUB_RECIPIENT_PORT"] == "8080"
    assert values["PUBSUB_GROUP"] == "keptn-gitops-service"
    assert values["PROJECT_FILTER"] == "sockshop"
    assert values["K8S_DEPLOYMENT_NAME"] == FULLNAME == one(objs, "Deployment")["metadata"]["name"]
    assert values["KEPTN_API_ENDPOINT"] == "http://api-gateway-nginx.keptn/api"
    token = env(distributor)["KEPTN_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "keptn-api-token", "key": "keptn-api-token"}


def test_distributor_mode_switches_the_service_transport(render: Any) -> None:
    values = env_values(service_container(render("distributor")))
    assert values["KEPTN_TRANSPORT"] == "distributor"
    # the distributor owns NATS and the Keptn API in this mode
    assert not {"NATS_URL", "PUBSUB_TOPIC", "PUBSUB_GROUP", "KEPTN_API_ENDPOINT"} & set(values)


# ---- RBAC: exactly what the configured waits need, where they need it ----


def _bound_to_the_service_account(objs: list[Obj], kind: str) -> None:
    for binding in of_kind(objs, f"{kind}Binding"):
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": FULLNAME}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]


def test_flux_rbac_reads_kustomizations_and_pokes_git_repositories_where_they_are(render: Any) -> None:
    objs = render("flux")
    assert roles_by_namespace(objs) == {namespace: KUSTOMIZATION_WAIT for namespace in FLUX_NAMESPACES}
    assert sorted(b["metadata"]["namespace"] for b in of_kind(objs, "RoleBinding")) == FLUX_NAMESPACES
    _bound_to_the_service_account(objs, "Role")
    assert not of_kind(objs, "ClusterRole") and not of_kind(objs, "ClusterRoleBinding")


def test_clusters_mount_their_kubeconfigs_and_only_the_in_cluster_target_gets_rbac(render: Any) -> None:
    objs = render("clusters")
    mount = mounts(service_container(objs))["/etc/keptn-gitops-service/clusters"]
    assert mount["readOnly"] is True
    secret = volumes(objs)[mount["name"]]["secret"]
    assert (secret["secretName"], secret["defaultMode"]) == ("cluster-kubeconfigs", 0o440)
    # the in-cluster target's Kustomization; the other clusters' objects are read with their own credentials
    assert roles_by_namespace(objs) == {"sockshop-dev": KUSTOMIZATION_WAIT}
    assert "clusters:" in rendered_config(objs)


def test_no_cluster_kubeconfigs_are_mounted_by_default(render: Any) -> None:
    assert "/etc/keptn-gitops-service/clusters" not in mounts(service_container(render("flux")))


def test_argocd_rbac_patches_applications_only_where_the_service_refreshes_or_syncs(render: Any) -> None:
    objs = render("argocd")
    assert roles_by_namespace(objs) == {"argocd": ARGOCD_WAIT, "apps-readonly": ARGOCD_READ_ONLY}
    _bound_to_the_service_account(objs, "Role")


def test_argocd_rest_needs_no_kubernetes_permission(render: Any) -> None:
    kinds = {o["kind"] for o in render("argocd-rest")}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def test_full_config_grants_each_wait_kind_where_its_objects_live(render: Any) -> None:
    objs = render("full-config")
    roles = roles_by_namespace(objs)
    everything = {**KUSTOMIZATION_WAIT, **HELMRELEASE_WAIT, **ARGOCD_WAIT}
    # written literally in the waits: the HelmRelease's Kustomization (flux-system) and the Applications (argocd)
    assert roles["flux-system"] == KUSTOMIZATION_WAIT
    assert roles["argocd"] == ARGOCD_WAIT
    # templated ({project}-{stage}): every configured kind in each namespace of rbac.namespaces
    for namespace in values_file("full-config.yaml")["rbac"]["namespaces"]:
        assert roles[namespace] == everything, namespace
    assert len(roles) == 5


def test_rbac_namespaces_add_roles_with_every_configured_wait(render: Any) -> None:
    objs = render("namespaced")
    wanted = values_file("namespaced.yaml")["rbac"]["namespaces"]
    roles = roles_by_namespace(objs)
    assert sorted(roles) == sorted(wanted)
    for rules in roles.values():
        assert rules == KUSTOMIZATION_WAIT
    _bound_to_the_service_account(objs, "Role")


def test_cluster_wide_rbac_has_the_same_rules(render: Any) -> None:
    objs = render("cluster-wide")
    assert not of_kind(objs, "Role") and not of_kind(objs, "RoleBinding")
    assert rules_as_sets(one(objs, "ClusterRole")["rules"]) == KUSTOMIZATION_WAIT
    one(objs, "ClusterRoleBinding")
    _bound_to_the_service_account(objs, "ClusterRole")


def test_a_templated_namespace_needs_rbac_namespaces_or_cluster_wide(helm: Helm) -> None:
    proc = template(helm, sets=("rbac.namespaces=null",))
    assert proc.returncode != 0, proc.stdout
    assert "config.rules[0].wait.flux.namespace: the namespace is a template" in proc.stderr, proc.stderr
    assert "list the namespaces it renders to in rbac.namespaces" in proc.stderr
    assert template(helm, sets=("rbac.namespaces=null", "rbac.clusterWide=true")).returncode == 0
    assert template(helm, sets=("rbac.namespaces=null", "rbac.create=false")).returncode == 0


def test_a_literal_namespace_gets_its_role_without_listing_it(helm: Helm) -> None:
    sets = ("rbac.namespaces=null", "config.rules[0].wait.flux.namespace=shop")
    # --set on a list item replaces the list: give the whole rule
    rule = values_file("flux.yaml")["config"]["rules"][0]
    flat = (
        f"config.rules[0].match.project={rule['match']['project']}",
        "config.rules[0].repository=fleet",
        "config.rules[0].updates[0].file=apps/kustomization.yaml",
        "config.rules[0].updates[0].kustomizeImage.name=docker.io/keptnexamples/carts",
        "config.rules[0].wait.flux.kind=HelmRelease",
        "config.rules[0].wait.flux.name=carts",
        "config.rules[0].wait.flux.kustomization.name=apps",
        "config.rules[0].wait.flux.kustomization.namespace=flux-system",
    )
    objs = objects(template(helm, sets=sets + flat))
    assert roles_by_namespace(objs) == {"shop": HELMRELEASE_WAIT, "flux-system": KUSTOMIZATION_WAIT}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_wildcards_or_extra_verbs_anywhere(render: Any, scenario: str) -> None:
    for obj in render(scenario):
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (obj["kind"], rule)
            patched = set(rule["resources"]) if "patch" in rule["verbs"] else set()
            assert patched <= {"gitrepositories", "helmreleases", "applications"}, rule
            assert set(rule["verbs"]) <= {"get", "list", "watch", "patch"}, rule


# ---- persistence ----


def test_persistence_uses_a_claim_and_recreates_pods(render: Any) -> None:
    objs = render("persistence")
    claim = one(objs, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    state = mounts(service_container(objs))[STATE_DIR]
    assert volumes(objs)[state["name"]]["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    assert one(objs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


# ---- network policy and service monitor ----


def test_network_policy_admits_only_the_http_port(render: Any) -> None:
    objs = render("observability")
    policy = one(objs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == values_file("observability.yaml")["networkPolicy"]["ingressFrom"]
    dns = policy["egress"][0]["ports"]
    assert {"port": 53, "protocol": "UDP"} in dns
    assert policy["egress"][1:] == values_file("observability.yaml")["networkPolicy"]["egress"]


def test_service_monitor_scrapes_the_http_port(render: Any) -> None:
    objs = render("observability")
    monitor = one(objs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "endpoints"}
    assert spec["selector"]["matchLabels"].items() <= one(objs, "Service")["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert spec["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}]
    service_ports = {p["name"] for p in one(objs, "Service")["spec"]["ports"]}
    assert {e["port"] for e in spec["endpoints"]} <= service_ports


def test_optional_objects_are_off_by_default(render: Any) -> None:
    kinds = {o["kind"] for o in render("flux")}
    assert not kinds & {"NetworkPolicy", "ServiceMonitor", "Secret"}


# ---- what the chart refuses to render ----


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            [
                "config.repositories[0].name=fleet",
                "config.repositories[0].url=https://git.example.org/f.git",
                "config.repositories[0].auth.type=token",
                "config.repositories[0].auth.tokenEnv=GIT_TOKEN",
            ],
            "set git.existingSecret",
        ),
        (
            [
                "git.existingSecret=creds",
                "config.repositories[0].name=fleet",
                "config.repositories[0].url=git@git.example.org:org/fleet.git",
                "config.repositories[0].auth.type=ssh",
                "config.repositories[0].auth.privateKeyFile=/home/keptn/.ssh/id_ed25519",
            ],
            "must be a file under git.mountPath",
        ),
        (
            ["replicaCount=2", "stateStore=jetstream"],
            "replicaCount must be 1 (for replicas, set persistence.enabled=false",
        ),
        (["replicaCount=3"], "replicaCount > 1 needs stateStore: jetstream"),
        (["stateStore=redis"], "stateStore"),
        (["config.rules[0].wait.timeout=10 minutes"], "does not match pattern"),
        (["config.repositories[0].auth.type=password"], "oneOf"),
        (["config.kind=Config"], "config/kind"),
        (
            [
                "config.rules[1].repository=fleet",
                "config.rules[1].match.project=x",
                "config.rules[1].updates[0].file=a",
            ],
            "missing properties 'yamlPath', 'value'",
        ),
        (["distributor.enable=true"], "additional properties 'enable' not allowed"),
        (["config.rules[0].wait.flux.kind=GitRepository"], "value must be one of 'Kustomization', 'HelmRelease'"),
        (["config.rules[0].wait.flux.kind=HelmRelease"], "missing property 'kustomization'"),
    ],
    ids=[
        "token-without-secret",
        "ssh-key-outside-mount",
        "persistence-replicas",
        "replicas-on-sqlite",
        "unknown-state-store",
        "bad-timeout",
        "bad-auth-type",
        "bad-kind",
        "update-without-edit",
        "typo-in-values",
        "wait-kind-unknown",
        "helmrelease-without-kustomization",
    ],
)
def test_broken_values_are_refused_with_a_clear_message(helm: Helm, sets: list[str], message: str) -> None:
    proc = template(helm, sets=tuple(sets))
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr


def test_unknown_config_keys_are_refused(helm: Helm, tmp_path: Path) -> None:
    config = values_file("flux.yaml")["config"]
    config["rules"][0]["wiat"] = {"none": {}}
    values = tmp_path / "typo.yaml"
    values.write_text(yaml.safe_dump({"config": config}), encoding="utf-8")
    proc = template(helm, ("flux.yaml", values))
    assert proc.returncode != 0
    assert "additional properties 'wiat' not allowed" in proc.stderr, proc.stderr


# ---- NOTES.txt ----


@pytest.mark.parametrize(
    ("values", "expected", "absent"),
    [
        (
            ("flux.yaml",),
            [
                "direct NATS at nats://keptn-nats:4222",
                "Roles in namespaces: sockshop-dev, sockshop-production",
                "kustomizations.kustomize.toolkit.fluxcd.io: get, list, watch",
                "gitrepositories.source.toolkit.fluxcd.io: patch",
                "PersistentVolumeClaim gitops-keptn-gitops-service-state",
            ],
            ["distributor sidecar", "applications", "Keptn API", "an emptyDir"],
        ),
        (
            ("flux.yaml", "distributor.yaml", "namespaced.yaml", "full-config.yaml"),
            [
                "Keptn distributor sidecar (docker.io/keptn/distributor:1.4.4)",
                "Keptn API: http://api-gateway-nginx.keptn/api",
                "Roles in namespaces: argocd, flux-system, helm-dev, sockshop-dev, sockshop-production",
                "helmreleases.helm.toolkit.fluxcd.io: get, list, watch, patch",
                "applications.argoproj.io: get, list, watch, patch",
            ],
            ["WARNING", "direct NATS"],
        ),
        (("argocd-rest.yaml",), ["none (the waits are none or Argo CD's REST API)"], ["Roles in namespaces: argocd"]),
        (("flux.yaml", "persistence.yaml"), ["(kept across upgrades and restarts; strategy Recreate)"], []),
    ],
    ids=["flux", "distributor-full-config", "argocd-rest", "persistence"],
)
def test_notes_describe_the_installation(
    helm: Helm, tmp_path: Path, values: tuple[str, ...], expected: list[str], absent: list[str]
) -> None:
    # `helm template` never prints NOTES.txt: render it through a preview template in a copy of the chart.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    preview = 'notes: {{ include (print $.Template.BasePath "/NOTES.txt") . | toJson }}\n'
    (chart / "templates" / "notes-preview.yaml").write_text(preview, encoding="utf-8")
    proc = helm.run(
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        helm.kube_version,
        "--show-only",
        "templates/notes-preview.yaml",
        *_values_args(values, ()),
    )
    assert proc.returncode == 0, proc.stderr
    notes = yaml.safe_load(proc.stdout)["notes"]
    for text in expected:
        assert text in notes, notes
    for text in absent:
        assert text not in notes, notes
    assert f"deploy/{RELEASE}-keptn-gitops-service" in notes


def test_webhook_secrets_come_from_the_secret_and_are_optional(render: Any, helm: Helm) -> None:
    variables = env(service_container(render("webhooks")))
    assert variables["FLUX_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "keptn-gitops-webhooks",
        "key": "flux-token",
        "optional": True,
    }
    assert variables["ARGOCD_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "argocd-token"
    assert variables["ARGOCD_WEBHOOK_HEADER"]["value"] == "Authorization"
    assert not {"FLUX_WEBHOOK_SECRET", "ARGOCD_WEBHOOK_SECRET"} & set(env(service_container(render("flux"))))
    proc = template(helm, ("flux.yaml", "webhooks.yaml"), ("webhooks.argocdTokenKey=",))
    variables = env(service_container(objects(proc)))
    assert "FLUX_WEBHOOK_SECRET" in variables and "ARGOCD_WEBHOOK_SECRET" not in variables
    proc = template(helm, sets=("webhooks.argocdHeader=X Bad",))
    assert proc.returncode != 0 and "argocdHeader" in proc.stderr


def test_replicas_share_the_jetstream_state_store(render: Any) -> None:
    objs = render("replicas")
    assert one(objs, "Deployment")["spec"]["replicas"] == 3
    variables = env(service_container(objs))
    assert variables["KEPTN_GITOPS_STATE_STORE"]["value"] == "jetstream"
    assert variables["KEPTN_GITOPS_STATE_LEASE"]["value"] == "20"
    assert variables["K8S_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # the lease owner
    assert env_values(service_container(render("flux")))["KEPTN_GITOPS_STATE_STORE"] == "sqlite"


def test_cdevents_settings_reach_the_service(render: Any, helm: Helm) -> None:
    variables = env(service_container(render("cdevents")))
    assert variables["KEPTN_GITOPS_CDEVENTS_SINK"]["valueFrom"]["secretKeyRef"] == {
        "name": "cdevents-sink",
        "key": "sink",
    }
    assert variables["KEPTN_GITOPS_CDEVENTS_MODE"]["value"] == "structured"
    assert variables["KEPTN_GITOPS_CDEVENTS_SUBJECT"]["value"] == "cdevents.keptn"
    assert variables["KEPTN_GITOPS_CDEVENTS_SOURCE"]["value"] == "/keptn/prod-eu"
    assert not any(name.startswith("KEPTN_GITOPS_CDEVENTS_") for name in env(service_container(render("flux"))))
    proc = template(helm, ("flux.yaml",), ("cdevents.sink=http://sink.example:8080/events",))
    variables = env_values(service_container(objects(proc)))
    assert variables["KEPTN_GITOPS_CDEVENTS_SINK"] == "http://sink.example:8080/events"
    assert variables["KEPTN_GITOPS_CDEVENTS_MODE"] == "binary"
    for wrong in ("cdevents.mode=json", "cdevents.sink=ftp://x", "cdevents.subject=a b"):
        proc = template(helm, ("flux.yaml",), (wrong,))
        assert proc.returncode != 0 and "cdevents" in proc.stderr, wrong


# ---- Keptn's value names: remoteControlPlane.* ----


def test_remote_control_plane_runs_the_distributor_against_the_keptn_api(helm: Helm) -> None:
    """helm-service's chart values: the distributor polls the remote control plane's API; the token becomes a
    Secret, never a literal in the pod spec."""
    sets = (
        "remoteControlPlane.enabled=true",
        "remoteControlPlane.api.protocol=https",
        "remoteControlPlane.api.hostname=keptn.example.org",
        "remoteControlPlane.api.token=s3cr3t-token",
        "remoteControlPlane.api.apiValidateTls=false",
    )
    objs = objects(template(helm, sets=sets))
    pods = containers(objs)
    assert list(pods) == ["keptn-gitops-service", "distributor"]
    assert env_values(pods["keptn-gitops-service"])["KEPTN_TRANSPORT"] == "distributor"
    distributor = env(pods["distributor"])
    assert distributor["KEPTN_API_ENDPOINT"]["value"] == "https://keptn.example.org/api"
    assert distributor["HTTP_SSL_VERIFY"]["value"] == "false"
    secret_name = f"{FULLNAME}-keptn-api"
    ref = {"name": secret_name, "key": "keptn-api-token"}
    assert distributor["KEPTN_API_TOKEN"]["valueFrom"]["secretKeyRef"] == ref
    secret = one(objs, "Secret")
    assert secret["metadata"]["name"] == secret_name
    assert base64.b64decode(secret["data"]["keptn-api-token"]).decode() == "s3cr3t-token"
    assert "s3cr3t-token" not in json.dumps(one(objs, "Deployment"))
    assert distributor["K8S_DEPLOYMENT_NAME"]["value"] == FULLNAME


def test_remote_control_plane_token_from_an_existing_secret(helm: Helm) -> None:
    sets = (
        "remoteControlPlane.enabled=true",
        "remoteControlPlane.api.hostname=keptn.example.org:8443",
        "keptnApi.existingSecret=keptn-api",
    )
    objs = objects(template(helm, sets=sets))
    distributor = env(containers(objs)["distributor"])
    assert distributor["KEPTN_API_ENDPOINT"]["value"] == "https://keptn.example.org:8443/api"
    assert distributor["HTTP_SSL_VERIFY"]["value"] == "true"
    ref = {"name": "keptn-api", "key": "keptn-api-token"}
    assert distributor["KEPTN_API_TOKEN"]["valueFrom"]["secretKeyRef"] == ref
    assert not of_kind(objs, "Secret")


def test_auto_detect_uses_the_keptn_of_the_release_namespace(helm: Helm) -> None:
    """job-executor-service's remoteControlPlane.autoDetect: Keptn's API gateway and its keptn-api-token Secret."""
    objs = objects(template(helm, sets=("remoteControlPlane.autoDetect.enabled=true",)))
    assert list(containers(objs)) == ["keptn-gitops-service"], "same cluster: the service registers itself"
    variables = env(service_container(objs))
    assert variables["KEPTN_API_ENDPOINT"]["value"] == f"http://api-gateway-nginx.{NAMESPACE}/api"
    ref = {"name": "keptn-api-token", "key": "keptn-api-token"}
    assert variables["KEPTN_API_TOKEN"]["valueFrom"]["secretKeyRef"] == ref


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("remoteControlPlane.enabled=true",), "needs remoteControlPlane.api.hostname"),
        (
            ("remoteControlPlane.enabled=true", "remoteControlPlane.api.hostname=keptn.example.org"),
            "needs the Keptn API token",
        ),
        (
            ("remoteControlPlane.autoDetect.enabled=true", "remoteControlPlane.autoDetect.namespace=keptn-cp"),
            "install the chart into keptn-cp",
        ),
        (("remoteControlPlane.api.apiValidateTls=false",), "honoured by the Keptn distributor sidecar only"),
        (
            ("remoteControlPlane.api.protocol=ftp",),
            "/remoteControlPlane/api/protocol': value must be one of 'http', 'https'",
        ),
    ],
    ids=["no-hostname", "no-token", "auto-detect-elsewhere", "tls-off-in-direct-mode", "bad-protocol"],
)
def test_remote_control_plane_mistakes_are_refused(helm: Helm, sets: tuple[str, ...], message: str) -> None:
    proc = template(helm, sets=sets)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr


def test_deployment_name_comes_from_the_release(helm: Helm, render: Any) -> None:
    assert env_values(service_container(render("flux")))["K8S_DEPLOYMENT_NAME"] == FULLNAME
    proc = helm.run(
        "template",
        "keptn-gitops-service",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        helm.kube_version,
        *_values_args(("flux.yaml",), ()),
    )
    deployment = one(objects(proc), "Deployment")
    assert deployment["metadata"]["name"] == "keptn-gitops-service"
    assert env_values(service_container([deployment]))["K8S_DEPLOYMENT_NAME"] == "keptn-gitops-service"


@pytest.mark.parametrize("doc", [ROOT / "README.md", CHART / "README.md"], ids=["README.md", "chart/README.md"])
def test_install_docs_build_and_push_the_tag_the_chart_expects(doc: Path) -> None:
    version = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))["appVersion"]
    text = doc.read_text(encoding="utf-8")
    assert f"docker build -t <registry>/keptn-gitops-service:{version} ." in text
    assert f"docker push <registry>/keptn-gitops-service:{version}" in text
    assert "not publish" in text, "say that the image is not published by this project"
