"""deploy/helm/mcpgate (the chart) and deploy/kubernetes (plain manifests), checked offline.

- The chart is rendered by helm-python-sdk (Helm's own Go engine as a library, no cluster: `lookup` is never
  used) for its defaults, each optional part switched on alone, and the shipped examples (everything on; the
  multi-replica setup). values.schema.json is applied by that render, and `helm lint --strict` must be clean.
- Every built-in object of every render, and of `kubectl kustomize deploy/kubernetes`, validates against the
  Kubernetes OpenAPI schemas bundled in kubernetes-validate, strict (unknown fields refused), for the oldest and
  newest supported releases. ServiceMonitor and PodMonitor are custom resources those schemas do not cover: their
  shape is checked against a schema written here from the Prometheus Operator's field names, which is weaker.
- Each render's ConfigMap is laid out as the pod sees it (config and extra files in /etc/mcpgate, emptyDirs as
  empty directories) and checked by `mcpgate validate` with the container's environment.
- Consistency: restricted security contexts; probes, Service, NetworkPolicy and monitors naming ports the
  container has; selectors selecting exactly their pods; HPA, PDB and NetworkPolicy following the values; the
  config checksum; the grace period above preStop + drain; NOTES.txt's multi-replica warnings.
- The plain manifests equal the chart's default render (release "mcpgate", namespace "mcpgate"), object by
  object, but for Helm's own labels, the checksum annotation and the generated ConfigMap's name.

Not done here: nothing is applied to a cluster, so admission (Pod Security "restricted", the API server's own
validation beyond the OpenAPI schema), the kubelet's sleep hook, the network plugin's policy enforcement,
ingress-nginx's annotations and the Prometheus Operator are not exercised.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import os
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import DEPLOY, program

CHART = DEPLOY / "helm" / "mcpgate"
PLAIN = DEPLOY / "kubernetes"
RELEASE = "mcpgate"
NAMESPACE = "mcpgate"
# The oldest release with the preStop `sleep` action on by default (beta in 1.30, GA in 1.34), and the newest
# whose schemas kubernetes-validate 1.37.0 bundles.
K8S_OLDEST = "1.30"
K8S_NEWEST = "1.37"
CRD_KINDS = {"ServiceMonitor", "PodMonitor"}


def module(name: str, hint: str):
    """Import `name`, or skip — fail under MCPGATE_REQUIRE_DEPLOY=1 (conftest's rule for programs)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"{name} not importable ({hint})"
        if os.environ.get("MCPGATE_REQUIRE_DEPLOY") == "1":
            pytest.fail(f"MCPGATE_REQUIRE_DEPLOY=1 but {message}", pytrace=False)
        pytest.skip(message)


def helm():
    return module("helm_python", "pip install -r tests/deploy/requirements.txt: helm-python-sdk")


def kv():
    return module("kubernetes_validate", "pip install -r tests/deploy/requirements.txt: kubernetes-validate")


# ---- rendering -----------------------------------------------------------------------------------------------


class Render:
    """One render: the objects (each with the template it came from) and NOTES.txt."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.notes = files.pop(f"{CHART.name}/templates/NOTES.txt", "")
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(files.items()):
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(doc)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, component: str = "gateway") -> dict[str, Any]:
        found = [o for o in self.all(kind) if o["metadata"]["labels"].get("app.kubernetes.io/component") == component]
        assert len(found) == 1, f"{len(found)} {kind} objects of component {component}"
        return found[0]

    def has(self, kind: str) -> bool:
        return bool(self.all(kind))

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def container(self) -> dict[str, Any]:
        return self.deployment()["spec"]["template"]["spec"]["containers"][0]

    def env(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.container()["env"]}

    def config_text(self) -> str:
        return self.one("ConfigMap")["data"]["config.yaml"]

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_text())


@cache
def _chart():
    return helm().Chart.load(str(CHART))


def render(values: dict[str, Any] | None = None, name: str = RELEASE, namespace: str = NAMESPACE) -> Render:
    return Render(_chart().render(copy.deepcopy(values or {}), name=name, namespace=namespace))


def render_error(values: dict[str, Any]) -> str:
    """The message of a render that must fail."""
    h = helm()
    with pytest.raises((h.HelmRenderError, h.HelmValuesError)) as failed:
        _chart().render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE)
    return str(failed.value)


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "examples" / name).read_text())


# Each optional part alone, the examples, and combinations whose interplay the templates handle.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "replicas": {"replicaCount": 3},
    "autoscaling": {"autoscaling": {"enabled": True}},
    "redis": {"redis": {"enabled": True}},
    "redis-auth": {"redis": {"enabled": True, "auth": True}, "secret": {"name": "mcpgate-secrets"}},
    "secret-existing": {"secret": {"name": "mcpgate-secrets"}},
    "secret-created": {"secret": {"create": True, "data": {"mcp-api-keys": "k1,k2", "seal-key": "s" * 48}}},
    "ingress": {"ingress": {"enabled": True, "tls": [{"secretName": "tls", "hosts": ["mcp.example.com"]}]}},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "podmonitor": {"metrics": {"podMonitor": {"enabled": True}}},
    "scrape-annotations": {"metrics": {"scrapeAnnotations": True}},
    "metrics-off": {"metrics": {"enabled": False}},
    "networkpolicy-off": {"networkPolicy": {"enabled": False}},
    "pdb-minavailable": {"podDisruptionBudget": {"maxUnavailable": None, "minAvailable": "50%"}},
    "audit": {"auditLog": {"enabled": True}},
    "no-prestop": {"preStopSleepSeconds": 0},
    "config-string": {
        "config": "server:\n  listen: 0.0.0.0:8000\n  allowed_hosts: ['*']\n  drain_timeout: 1m 30s\n"
        "backends:\n  demo: {kind: builtin, builtin: demo}\n"
    },
    "full": example("values-full.yaml"),
    "ha": example("values-ha.yaml"),
}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request) -> tuple[str, Render]:
    return request.param, render(SCENARIOS[request.param])


# ---- kubernetes-validate, and the custom resources' shape -------------------------------------------------------

_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {"port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                   "interval": _DURATION, "scrapeTimeout": _DURATION},
}


def _monitor_schema(kind: str, endpoints: str) -> dict[str, Any]:
    """The subset of the Prometheus Operator's v1 CRD this chart writes, closed (no other field allowed)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object", "additionalProperties": False, "required": ["name", "namespace"],
                "properties": {"name": {"type": "string", "maxLength": 63}, "namespace": {"type": "string"},
                               "labels": _LABELS},
            },
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["selector", endpoints],
                "properties": {
                    "selector": {"type": "object", "additionalProperties": False, "required": ["matchLabels"],
                                 "properties": {"matchLabels": _LABELS}},
                    "namespaceSelector": {"type": "object", "additionalProperties": False,
                                          "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}},
                    endpoints: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    }


CRD_SCHEMAS = {"ServiceMonitor": _monitor_schema("ServiceMonitor", "endpoints"),
               "PodMonitor": _monitor_schema("PodMonitor", "podMetricsEndpoints")}


def validate_objects(objects: list[dict[str, Any]], version: str) -> list[str]:
    """Problems of each object: built-in kinds by kubernetes-validate --strict, the monitors by CRD_SCHEMAS."""
    jsonschema = module("jsonschema", "pip install -r tests/deploy/requirements.txt: jsonschema")
    k = kv()
    problems = []
    for obj in objects:
        what = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("kind") in CRD_KINDS:
            for error in jsonschema.Draft202012Validator(CRD_SCHEMAS[obj["kind"]]).iter_errors(obj):
                problems.append(f"{what}: {error.json_path}: {error.message}")
            continue
        try:
            k.validate(obj, version, strict=True)
        except k.ValidationError as error:
            problems.append(f"{what} (k8s {version}): {'/'.join(map(str, error.path))}: {error.message}")
        except k.SchemaNotFoundError as error:
            problems.append(f"{what}: {error.message}")
    return problems


@pytest.mark.parametrize("version", [K8S_OLDEST, K8S_NEWEST])
def test_every_render_validates_strictly(scenario, version):
    name, r = scenario
    assert r.objects, name
    assert validate_objects(r.objects, version) == [], name


def test_the_validation_bites():
    """A misspelled field, a wrong type and a malformed monitor are refused; the sleep hook is unknown before 1.29,
    which is why 1.30 (where it is on by default) is the oldest release supported."""
    r = render()
    deployment = copy.deepcopy(r.deployment())
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    assert validate_objects([deployment], K8S_NEWEST)
    service = copy.deepcopy(r.one("Service"))
    service["spec"]["ports"][0]["port"] = "eight thousand"
    assert validate_objects([service], K8S_OLDEST)
    assert any("sleep" in p for p in validate_objects([r.deployment()], "1.28"))
    monitor = copy.deepcopy(render(SCENARIOS["servicemonitor"]).one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert validate_objects([monitor], K8S_NEWEST)
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"] == f">={K8S_OLDEST}.0-0"


def test_helm_lint_is_clean():
    """Chart.yaml, the templates' YAML, the schema. Helm lints in "lint mode", where the chart's own `fail` checks
    only log: those are tested by the renders above and below, which do stop on them."""
    for values in (None, SCENARIOS["full"]):
        report = helm().lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        assert report["errors"] == [], report
        # Severity 1 is "info" (e.g. "icon is recommended"); warnings (2) and errors (3) fail.
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_schema_refuses_bad_values():
    assert "additional properties" in render_error({"replicas": 2})
    assert "/port" in render_error({"port": "http"})
    assert "/podDisruptionBudget/maxUnavailable" in render_error({"podDisruptionBudget": {"maxUnavailable": "lots"}})
    assert "/config" in render_error({"config": ["not", "an", "object"]})


# ---- the configuration, as the pod sees it -------------------------------------------------------------------

# What an operator's own Secret would hold, for the variables a render reads from a Secret it does not create.
PLACEHOLDERS = {
    "MCP_API_KEYS": "key-one,key-two",
    "API_KEY_SALT": "salt-" + "x" * 27,
    "JWT_SECRET": "j" * 40,
    "REDIS_URL": "redis://redis.example.internal:6379/0",
    "REDIS_PASSWORD": "placeholder",
    "MCPGATE_SEAL_KEY": "k" * 48,
    "REMOTE_TOKEN": "placeholder",
}


def pod_environment(r: Render, root: Path) -> tuple[dict[str, str], Path]:
    """Lay out the gateway pod's volumes under `root` and return its environment, paths moved under `root`,
    and its working directory (the config volume, the image's WORKDIR /etc/mcpgate)."""
    pod = r.deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    moved: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        place = root / mount["mountPath"].strip("/").replace("/", "_")
        place.mkdir(parents=True, exist_ok=True)
        moved[mount["mountPath"]] = place
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            data = next(c for c in r.all("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"])["data"]
            for item in volume["configMap"]["items"]:
                (place / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (place / item["path"]).write_text(data[item["key"]])
        else:
            assert "emptyDir" in volume, volume
    created = {s["metadata"]["name"]: s.get("stringData", {}) for s in r.all("Secret")}
    env: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:
            value = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            if ref["name"] in created:
                value = created[ref["name"]].get(ref["key"])
                assert value is not None or ref.get("optional"), f"{entry['name']}: not in the created Secret"
            else:
                value = PLACEHOLDERS.get(entry["name"])
            if value is None:
                continue
        for mount, place in moved.items():
            if value == mount or value.startswith(mount + "/"):
                value = str(place) + value[len(mount):]
                break
        env[entry["name"]] = value
    return env, moved["/etc/mcpgate"]


def mcpgate_validate(mcpgate_bin: str, config: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run([mcpgate_bin, "validate", str(config)], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_configmap_is_a_valid_mcpgate_config(scenario, mcpgate_bin, tmp_path):
    name, r = scenario
    env, workdir = pod_environment(r, tmp_path)
    assert env["MCP_CONFIG_PATH"] == str(workdir / "config.yaml")
    done = mcpgate_validate(mcpgate_bin, Path(env["MCP_CONFIG_PATH"]), workdir, env)
    assert done.returncode == 0, f"{name}:\n{done.stdout}{done.stderr}\n--- config.yaml:\n{r.config_text()}"
    assert "valid" in done.stdout


def test_mcpgate_validate_bites(mcpgate_bin, tmp_path):
    """The same check refuses a config with a typo, and a handler file the ConfigMap does not carry."""
    r = render({"config": {"server": {"listne": "0.0.0.0:8000"}, "backends": {"demo": {"kind": "builtin", "builtin": "demo"}}}})
    env, workdir = pod_environment(r, tmp_path / "typo")
    assert mcpgate_validate(mcpgate_bin, Path(env["MCP_CONFIG_PATH"]), workdir, env).returncode != 0
    values = copy.deepcopy(SCENARIOS["full"])
    values["configFiles"] = {}
    r = render(values)
    env, workdir = pod_environment(r, tmp_path / "nofile")
    done = mcpgate_validate(mcpgate_bin, Path(env["MCP_CONFIG_PATH"]), workdir, env)
    assert done.returncode != 0 and "handlers/report.js" in done.stdout + done.stderr


def test_allowed_hosts_cover_service_and_ingress():
    hosts = render(namespace="tools").config()["server"]["allowed_hosts"]
    assert hosts == ["localhost", "127.0.0.1", "::1", "mcpgate", "mcpgate.tools", "mcpgate.tools.svc",
                     "mcpgate.tools.svc.cluster.local"]
    r = render({"ingress": {"enabled": True, "hosts": ["a.example.com"]}, "hostNames": {"extra": ["b.internal"]},
                "clusterDomain": "corp.local"}, name="edge")
    hosts = r.config()["server"]["allowed_hosts"]
    svc = r.one("Service")["metadata"]["name"]
    assert svc == "edge-mcpgate"
    assert {svc, f"{svc}.{NAMESPACE}.svc.corp.local", "a.example.com", "b.internal"} <= set(hosts)
    # The user's own list is kept and added to; "*" (any host) is left alone; a string is written as it is.
    own = render({"config": {"server": {"allowed_hosts": ["gw.example"]}, "backends": {}}}).config()["server"]
    assert own["allowed_hosts"][0] == "gw.example" and "mcpgate" in own["allowed_hosts"]
    alone = render({"config": {"server": {"allowed_hosts": ["gw.example"]}, "backends": {}},
                    "hostNames": {"auto": False}}).config()["server"]
    assert alone["allowed_hosts"] == ["gw.example"]
    anyhost = render({"config": {"server": {"allowed_hosts": ["*"]}, "backends": {}}}).config()["server"]
    assert anyhost["allowed_hosts"] == ["*"]
    assert render(SCENARIOS["config-string"]).config_text() == SCENARIOS["config-string"]["config"]
    assert render({"hostNames": {"auto": False}}).config()["server"]["allowed_hosts"] == ["localhost", "127.0.0.1", "::1"]


def test_large_numbers_survive_the_template():
    """Helm's values are floats inside; a large integer must still come out as an integer, not 1e+06."""
    assert render(SCENARIOS["full"]).config()["server"]["max_connections"] == 1_000_000


# ---- the pod -------------------------------------------------------------------------------------------------


def pod_specs(r: Render) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in r.all("Deployment"):
        yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def test_security_context_is_restricted(scenario):
    name, r = scenario
    for who, pod in pod_specs(r):
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}, who
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False, who
        assert not any(k in pod for k in ("hostNetwork", "hostPID", "hostIPC")), who
        for c in pod["containers"]:
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, who
            assert csc["readOnlyRootFilesystem"] is True, who
            assert csc["capabilities"] == {"drop": ["ALL"]}, who
            assert not csc.get("privileged"), who
        for v in pod["volumes"]:
            assert set(v) & {"configMap", "emptyDir", "secret"}, f"{who}: volume {v}"
    gateway = r.deployment()["spec"]["template"]["spec"]
    assert {k: gateway["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")} == {
        "runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 1001}
    mounts = {m["mountPath"]: m["name"] for m in r.container()["volumeMounts"]}
    assert "emptyDir" in next(v for v in gateway["volumes"] if v["name"] == mounts["/tmp"])
    sa = r.all("ServiceAccount")
    assert len(sa) == 1 and sa[0]["automountServiceAccountToken"] is False
    assert gateway["serviceAccountName"] == sa[0]["metadata"]["name"]


def test_security_values_flow_through():
    r = render({"podSecurityContext": {"runAsNonRoot": True, "runAsUser": 2000, "runAsGroup": 2000, "fsGroup": 2000,
                                       "seccompProfile": {"type": "RuntimeDefault"}}})
    assert r.deployment()["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 2000


def ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def test_probes_ports_and_environment(scenario):
    name, r = scenario
    values = SCENARIOS[name]
    c, env = r.container(), r.env()
    p = ports(c)
    assert p["http"] == int(env["PORT"]["value"]) == values.get("port", 8000)
    assert env["BIND_IP"]["value"] == "0.0.0.0" and env["LOG_FORMAT"]["value"] == "json"
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["MCP_CONFIG_PATH"]["value"] == mounts["config"] + "/config.yaml"
    metrics_on = values.get("metrics", {}).get("enabled", True)
    assert env["METRICS_ENABLED"]["value"] == str(metrics_on).lower()
    if metrics_on:
        assert p["metrics"] == int(env["PROMETHEUS_PORT"]["value"]) != p["http"]
    else:
        assert "metrics" not in p and "PROMETHEUS_PORT" not in env
    service = r.one("Service")
    assert {sp["name"]: sp["targetPort"] for sp in service["spec"]["ports"]} == {n: n for n in p}
    assert selects(service["spec"]["selector"], pod_labels(r))
    assert len(env) == len(c["env"]), "a variable set twice"


def test_port_values_come_out():
    r = render({"port": 8080, "service": {"port": 80}, "metrics": {"port": 9191}})
    assert ports(r.container()) == {"http": 8080, "metrics": 9191}
    assert r.env()["PORT"]["value"] == "8080" and r.env()["PROMETHEUS_PORT"]["value"] == "9191"
    assert r.config()["server"]["listen"] == "0.0.0.0:8080"
    assert {sp["name"]: sp["port"] for sp in r.one("Service")["spec"]["ports"]} == {"http": 80, "metrics": 9191}
    assert "metrics.port must differ" in render_error({"port": 9090})


def test_secret_references():
    r = render(SCENARIOS["secret-existing"])
    refs = {n: e["valueFrom"]["secretKeyRef"] for n, e in r.env().items() if "valueFrom" in e}
    assert refs == {
        "MCP_API_KEYS": {"name": "mcpgate-secrets", "key": "mcp-api-keys", "optional": False},
        "API_KEY_SALT": {"name": "mcpgate-secrets", "key": "api-key-salt", "optional": True},
        "JWT_SECRET": {"name": "mcpgate-secrets", "key": "jwt-secret", "optional": True},
        "REDIS_URL": {"name": "mcpgate-secrets", "key": "redis-url", "optional": True},
        "REDIS_PASSWORD": {"name": "mcpgate-secrets", "key": "redis-password", "optional": True},
        "MCPGATE_SEAL_KEY": {"name": "mcpgate-secrets", "key": "seal-key", "optional": True},
    }
    assert not r.has("Secret")
    # No Secret named: no reference at all (a pod would not start on a missing required Secret).
    assert not any("valueFrom" in e for e in render().env().values())
    # Other names and variables, a variable left out, SESSION_SECRET as the alias it is.
    r = render({"secret": {"name": "s", "env": {"JWT_SECRET": "", "SESSION_SECRET": "session"},
                           "required": ["MCP_API_KEYS", "SESSION_SECRET"]}})
    assert "JWT_SECRET" not in r.env()
    assert r.env()["SESSION_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "session", "optional": False}
    # A created Secret holds what the values say, and its checksum rolls the pods.
    r = render(SCENARIOS["secret-created"])
    secret = r.one("Secret")
    assert secret["metadata"]["name"] == "mcpgate" and secret["stringData"]["seal-key"] == "s" * 48
    assert r.env()["MCP_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "mcpgate"
    assert "checksum/secret" in r.deployment()["spec"]["template"]["metadata"]["annotations"]
    assert "secret.data has no" in render_error({"secret": {"create": True, "data": {"seal-key": "x" * 48}}})


def test_in_cluster_redis():
    r = render(SCENARIOS["redis-auth"])
    redis_svc = r.one("Service", "redis")
    port = redis_svc["spec"]["ports"][0]
    assert r.env()["REDIS_URL"] == {"name": "REDIS_URL",
                                    "value": f"redis://{redis_svc['metadata']['name']}:{port['port']}/0"}
    # The Secret's REDIS_URL is not read too, and the password becomes a must for both sides.
    assert sum(e["name"] == "REDIS_URL" for e in r.container()["env"]) == 1
    assert r.env()["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["optional"] is False
    redis = r.one("Deployment", "redis")["spec"]["template"]["spec"]
    assert selects(redis_svc["spec"]["selector"], r.one("Deployment", "redis")["spec"]["template"]["metadata"]["labels"])
    assert not selects(redis_svc["spec"]["selector"], pod_labels(r))
    assert ports(redis["containers"][0])[port["targetPort"]] == 6379
    args = redis["containers"][0]["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert redis["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    assert "redis.auth needs" in render_error({"redis": {"enabled": True, "auth": True}})
    assert "--protected-mode" in render(SCENARIOS["redis"]).one("Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]["args"]


# ---- termination ---------------------------------------------------------------------------------------------


def drain_seconds(text: str) -> int:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return -(-sum(int(n) * units[u] for n, u in re.findall(r"(\d+)\s*(ms|h|m|s)", text)) // 1)


def test_grace_period_covers_prestop_and_drain(scenario):
    name, r = scenario
    pod = r.deployment()["spec"]["template"]["spec"]
    drain = drain_seconds(r.config().get("server", {}).get("drain_timeout", "30s"))
    pause = SCENARIOS[name].get("preStopSleepSeconds", 10)
    lifecycle = r.container().get("lifecycle")
    if pause:
        assert lifecycle == {"preStop": {"sleep": {"seconds": pause}}}
    else:
        assert lifecycle is None
    assert pod["terminationGracePeriodSeconds"] > drain + pause
    assert render().deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45


def test_grace_period_follows_drain_timeout():
    def grace(values):
        return render(values).deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]

    demo = {"demo": {"kind": "builtin", "builtin": "demo"}}
    assert grace({"config": {"server": {"drain_timeout": "1m 30s"}, "backends": demo}}) == 90 + 10 + 5
    assert grace({"config": {"server": {"drain_timeout": "2min"}, "backends": demo}, "preStopSleepSeconds": 5}) == 130
    assert grace({"config": {"server": {"drain_timeout": "1500ms"}, "backends": demo}}) == 2 + 10 + 5
    assert grace(SCENARIOS["config-string"]) == 105
    assert grace({"terminationGracePeriodSeconds": 41}) == 41
    assert "must be above" in render_error({"terminationGracePeriodSeconds": 40})
    assert "cannot read" in render_error({"config": {"server": {"drain_timeout": "soon"}, "backends": demo}})


# ---- rollout -------------------------------------------------------------------------------------------------


def test_checksum_follows_the_config():
    def checksum(r: Render) -> str:
        return r.deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = render()
    text = base.files[f"{CHART.name}/templates/configmap.yaml"]
    assert checksum(base) == hashlib.sha256(text.encode()).hexdigest()
    assert checksum(render({"replicaCount": 4})) == checksum(base)
    changed = render({"config": {"logging": {"level": "debug"}, "backends": {"demo": {"kind": "builtin", "builtin": "demo"}}}})
    assert checksum(changed) != checksum(base)
    assert checksum(render({"ingress": {"enabled": True}})) != checksum(base), "new allowed host, same checksum"
    assert checksum(render({"configFiles": {"a.txt": "x"}})) != checksum(base)


# ---- PDB, HPA ------------------------------------------------------------------------------------------------


def pod_labels(r: Render, component: str = "gateway") -> dict[str, str]:
    return r.one("Deployment", component)["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_pdb_follows_values():
    r = render()
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(r))
    r = render({"replicaCount": 4, "podDisruptionBudget": {"maxUnavailable": None, "minAvailable": 3}})
    assert r.one("PodDisruptionBudget")["spec"]["minAvailable"] == 3 and r.deployment()["spec"]["replicas"] == 4
    assert render(SCENARIOS["pdb-minavailable"]).one("PodDisruptionBudget")["spec"]["minAvailable"] == "50%"
    assert "not both" in render_error({"podDisruptionBudget": {"minAvailable": 1}})
    assert not render({"podDisruptionBudget": {"enabled": False}}).has("PodDisruptionBudget")
    # With Redis in, the gateway's selectors still select only the gateway's pods.
    r = render(SCENARIOS["redis"])
    assert not selects(r.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels(r, "redis"))


def test_hpa_follows_values():
    assert not render().has("HorizontalPodAutoscaler")
    r = render(SCENARIOS["autoscaling"])
    hpa = r.one("HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["metrics"]}
    assert targets == {"cpu": {"type": "Utilization", "averageUtilization": 70},
                       "memory": {"type": "Utilization", "averageUtilization": 80}}
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": r.deployment()["metadata"]["name"]}
    assert "replicas" not in r.deployment()["spec"], "the HPA owns the replica count"
    assert r.container()["resources"]["requests"].keys() >= {"cpu", "memory"}, "utilization needs requests"
    r = render({"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 6,
                                "targetCPUUtilizationPercentage": 55, "targetMemoryUtilizationPercentage": None}})
    hpa = r.one("HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (4, 6)
    assert [(m["resource"]["name"], m["resource"]["target"]["averageUtilization"]) for m in hpa["metrics"]] == [("cpu", 55)]
    assert "must not exceed" in render_error({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}})
    assert "give target" in render_error({"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None,
                                                          "targetMemoryUtilizationPercentage": None}})


# ---- NetworkPolicy -------------------------------------------------------------------------------------------


def policy(r: Render, component: str = "gateway") -> dict[str, Any]:
    return r.one("NetworkPolicy", component)["spec"]


def test_networkpolicy_defaults():
    r = render()
    np = policy(r)
    assert selects(np["podSelector"]["matchLabels"], pod_labels(r))
    assert np["policyTypes"] == ["Ingress", "Egress"]
    container_ports = ports(r.container())
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in np["ingress"]}
    assert set(by_port) == {"http", "metrics"} and set(by_port) <= set(container_ports)
    assert all(rule["from"] and len(rule["ports"]) == 1 for rule in np["ingress"]), "a rule without peers admits all"
    assert by_port["http"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert by_port["metrics"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    [dns] = np["egress"]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [("TCP", 53), ("UDP", 53)]
    assert not render(SCENARIOS["networkpolicy-off"]).has("NetworkPolicy")


def test_networkpolicy_follows_values():
    r = render({"redis": {"enabled": True},
                "networkPolicy": {"ingressControllers": [], "clients": [{"podSelector": {"matchLabels": {"app": "agent"}}}],
                                  "prometheus": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}],
                                  "redis": [{"cidr": "10.0.3.10/32", "ports": [6379, 26379]}],
                                  "upstreams": [{"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"], "ports": [443]}]}})
    np = policy(r)
    assert [rule["from"] for rule in np["ingress"]] == [[{"podSelector": {"matchLabels": {"app": "agent"}}}],
                                                        [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}]]
    egress = np["egress"]
    redis_rule = next(e for e in egress if "podSelector" in e["to"][0] and "namespaceSelector" not in e["to"][0])
    assert selects(redis_rule["to"][0]["podSelector"]["matchLabels"], pod_labels(r, "redis"))
    assert redis_rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    blocks = [(e["to"][0]["ipBlock"], [p["port"] for p in e["ports"]]) for e in egress if "ipBlock" in e["to"][0]]
    assert blocks == [({"cidr": "10.0.3.10/32"}, [6379, 26379]),
                      ({"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}, [443])]
    # The in-cluster Redis: only the gateway's pods come in, nothing goes out.
    rnp = policy(r, "redis")
    assert selects(rnp["podSelector"]["matchLabels"], pod_labels(r, "redis"))
    assert not selects(rnp["podSelector"]["matchLabels"], pod_labels(r))
    assert selects(rnp["ingress"][0]["from"][0]["podSelector"]["matchLabels"], pod_labels(r))
    assert rnp["egress"] == []
    # Nobody named: nobody comes in (an empty `from` would admit everybody).
    closed = policy(render({"metrics": {"enabled": False}, "networkPolicy": {"ingressControllers": [], "clients": []}}))
    assert closed["ingress"] == []
    scraped_only = policy(render({"networkPolicy": {"ingressControllers": [], "clients": []}}))
    assert [rule["ports"][0]["port"] for rule in scraped_only["ingress"]] == ["metrics"]
    assert [rule["ports"][0]["port"] for rule in policy(render(SCENARIOS["metrics-off"]))["ingress"]] == ["http"]


# ---- Ingress, monitors ---------------------------------------------------------------------------------------


def test_ingress():
    r = render(SCENARIOS["full"])
    ing = r.one("Ingress")
    a = ing["metadata"]["annotations"]
    assert a["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(a["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(a["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert ing["spec"]["ingressClassName"] == "nginx"
    service = r.one("Service")
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    hosts = set()
    for rule in ing["spec"]["rules"]:
        hosts.add(rule["host"])
        paths = [p["path"] for p in rule["http"]["paths"]]
        assert paths == ["/mcp", "/.well-known/oauth-protected-resource"], "no /metrics or /status outside"
        for p in rule["http"]["paths"]:
            assert p["backend"]["service"]["name"] == service["metadata"]["name"]
            assert p["backend"]["service"]["port"]["name"] in service_ports
    assert hosts == {"mcp.example.com", "mcp.example.org"} and hosts <= set(r.config()["server"]["allowed_hosts"])
    dropped = render({"ingress": {"enabled": True, "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": None}}})
    assert "nginx.ingress.kubernetes.io/proxy-body-size" not in dropped.one("Ingress")["metadata"]["annotations"]


def test_monitors_scrape_the_metrics_port():
    r = render(SCENARIOS["full"])
    path = r.config()["metrics"]["path"]
    sm, pm = r.one("ServiceMonitor"), r.one("PodMonitor")
    service = r.one("Service")
    assert selects(sm["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert not selects(sm["spec"]["selector"]["matchLabels"], r.one("Service", "redis")["metadata"]["labels"])
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": path, "interval": "30s", "scrapeTimeout": "10s"}]
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert selects(pm["spec"]["selector"]["matchLabels"], pod_labels(r))
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] in ports(r.container())
    assert pm["spec"]["podMetricsEndpoints"][0]["path"] == path
    annotations = r.deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports(r.container())["metrics"]) and annotations["prometheus.io/path"] == path
    assert render(SCENARIOS["servicemonitor"]).one("ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"
    off = render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}})
    assert not off.has("ServiceMonitor") and not off.has("PodMonitor")


# ---- names, notes ---------------------------------------------------------------------------------------------


def test_names_fit_63_characters():
    long = "a-very-long-release-name-that-goes-on-and-on-for-ages"  # 53: Helm's longest release name
    helm().validate_release_name(long)
    r = render({**SCENARIOS["full"]}, name=long)
    names = [o["metadata"]["name"] for o in r.objects]
    assert all(len(n) <= 63 and not n.endswith("-") for n in names), names
    assert len({(o["kind"], o["metadata"]["name"]) for o in r.objects}) == len(r.objects)
    assert r.one("Deployment", "redis")["metadata"]["name"].endswith("-redis")
    for o in r.objects:
        assert all(len(v) <= 63 for v in o["metadata"]["labels"].values()), o["metadata"]["labels"]


def test_notes_warn_about_unshared_replicas():
    assert "no Redis" in render({"replicaCount": 3}).notes
    assert "no shared sealing key" in render({"replicaCount": 3, "redis": {"enabled": True}}).notes
    assert "no Redis" in render({"autoscaling": {"enabled": True}}).notes
    quiet = render(SCENARIOS["ha"]).notes
    assert "WARNING" not in quiet and "Check that" not in quiet
    single = render().notes
    assert "no Redis" not in single and "sealing key" not in single
    assert "anyone who reaches /mcp" in single and "anyone" not in render(SCENARIOS["secret-existing"]).notes
    assert "networkPolicy.upstreams" in render({"config": {"upstreams": {"u": {"url": "https://u.example/mcp"}}}}).notes


# ---- the plain manifests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain() -> list[dict[str, Any]]:
    kubectl = program("kubectl", "kubectl kustomize builds deploy/kubernetes")
    out = subprocess.run([kubectl, "kustomize", str(PLAIN)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("version", [K8S_OLDEST, K8S_NEWEST])
def test_plain_manifests_validate_strictly(plain, version):
    assert validate_objects(plain, version) == []


def test_plain_config_is_valid(plain, mcpgate_bin, tmp_path):
    r = Render({})
    r.objects = [o for o in plain if o["kind"] != "Namespace"]
    env, workdir = pod_environment(r, tmp_path)
    done = mcpgate_validate(mcpgate_bin, Path(env["MCP_CONFIG_PATH"]), workdir, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (PLAIN / "config.yaml").read_text() == r.config_text()


def normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without what only Helm or only kustomize adds: Helm's labels, the checksum, the hash suffix."""
    obj = copy.deepcopy(obj)

    def strip(meta: dict[str, Any]) -> None:
        for key in ("helm.sh/chart", "app.kubernetes.io/managed-by"):
            meta.get("labels", {}).pop(key, None)
        meta.get("annotations", {}).pop("checksum/config", None)
        if meta.get("annotations") == {}:
            del meta["annotations"]

    strip(obj["metadata"])
    if obj["kind"] == "ConfigMap":
        obj["metadata"]["name"] = re.sub(r"-[a-z0-9]{10}$", "", obj["metadata"]["name"])
        obj["data"] = {k: yaml.safe_load(v) for k, v in obj["data"].items()}
    if obj["kind"] == "Deployment":
        strip(obj["spec"]["template"]["metadata"])
        for v in obj["spec"]["template"]["spec"]["volumes"]:
            if "configMap" in v:
                v["configMap"]["name"] = re.sub(r"-[a-z0-9]{10}$", "", v["configMap"]["name"])
    return obj


def test_plain_manifests_equal_the_chart_defaults(plain):
    chart = {(n["kind"], n["metadata"]["name"]): n for n in map(normalized, render().objects)}
    namespaces = [o for o in plain if o["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == [NAMESPACE]
    assert namespaces[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    mine = {(n["kind"], n["metadata"]["name"]): n for n in map(normalized, plain) if n["kind"] != "Namespace"}
    assert sorted(mine) == sorted(chart)
    for key in chart:
        assert mine[key] == chart[key], f"{key} differs from the chart's default render"
    # And the comparison is not vacuous: the essentials are there on both sides.
    pod = mine[("Deployment", "mcpgate")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/ready"
