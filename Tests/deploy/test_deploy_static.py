"""Static (and cheap functional) checks of everything under deploy/.

* every YAML file parses (multi-document) with PyYAML;
* docker-compose: upstream unpublished, sidecar healthcheck, env, grace period;
* k8s: native sidecar, probes, termination budget, secretKeyRef, hardening;
* Dockerfile: two stages, non-root USER, working HEALTHCHECK command;
* systemd: hardening directives, `systemd-analyze verify` without warnings;
* forward-auth: nginx / Caddy / Traefik configs (nginx and Caddy are also run
  against a fake sidecar + fake app when the binaries are installed);
* sidecar.yaml example.

Run: pytest -q Tests/deploy
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IDENTITY_HEADERS = ["X-Auth-Sub", "X-Auth-Email", "X-Auth-Name", "X-Auth-Picture", "X-Auth-Claims"]


# --------------------------------------------------------------------------- helpers


def load_all(path: Path) -> list:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_list_to_dict(env: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in env}


def prestop_seconds(container: dict) -> int:
    pre = container.get("lifecycle", {}).get("preStop")
    if not pre:
        return 0
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    cmd = pre["exec"]["command"]
    assert os.path.basename(cmd[0]) == "sleep", cmd
    return int(cmd[1])


def parse_duration(value) -> float:
    """compose / systemd durations such as 35, 35s, 1m30s, 500ms."""
    if isinstance(value, (int, float)):
        return float(value)
    if re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return float(value)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    respond = None  # set per server: callable(handler) -> (status, headers, body)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, headers, body = self.server.respond(self)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_HEAD = _handle

    def log_message(self, *args):  # keep pytest output clean
        pass


@contextmanager
def http_server(respond):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.respond = respond
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def request(url: str, method: str = "GET", headers: dict | None = None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"process exited early ({proc.returncode}): {out}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"port {port} never opened")


# --------------------------------------------------------------------------- YAML


def test_yaml_files_exist():
    names = {p.relative_to(DEPLOY).as_posix() for p in yaml_files()}
    for expected in [
        "docker-compose.yml",
        "sidecar.yaml",
        "forward-auth/traefik.yml",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/networkpolicy.yaml",
        "k8s/secret.yaml",
    ]:
        assert expected in names, f"missing deploy/{expected}"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_parses(path):
    docs = load_all(path)
    assert docs, f"{path} has no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: top-level document is not a mapping"


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose():
    (doc,) = load_all(DEPLOY / "docker-compose.yml")
    return doc


def test_compose_upstream_not_published(compose):
    services = compose["services"]
    assert set(services) >= {"sidecar", "api"}
    assert "ports" not in services["api"], "the API must only be reachable through the sidecar"
    assert "network_mode" not in services["api"]
    # The API lives only on an internal network.
    for net in services["api"]["networks"]:
        assert compose["networks"][net].get("internal") is True, net


def test_compose_sidecar_published_and_configured(compose):
    sidecar = compose["services"]["sidecar"]
    published = [str(p) for p in sidecar["ports"]]
    assert any(p.split(":")[-1] == "8080" for p in published), published
    env = sidecar["environment"]
    assert env["SIDECAR_UPSTREAM"] == "http://api:8000"
    assert env["SIDECAR_LISTEN"].endswith(":8080")
    # The secret comes from an env file / secret, never inline.
    assert "AUTH_SECRET" not in env
    env_files = sidecar.get("env_file")
    assert env_files, "AUTH_SECRET must come from an env_file"
    assert (DEPLOY / "sidecar.env.example").is_file()
    assert "sidecar.env" in (DEPLOY / ".gitignore").read_text().split()
    example = (DEPLOY / "sidecar.env.example").read_text()
    assert re.search(r"^AUTH_SECRET=", example, re.M)
    # Build context / Dockerfile paths resolve.
    build = sidecar["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).is_file()
    api_build = compose["services"]["api"]["build"]
    assert (DEPLOY / api_build / "Dockerfile").is_file()
    assert sidecar["depends_on"]["api"]["condition"] == "service_healthy"


def test_compose_healthcheck_and_grace(compose):
    sidecar = compose["services"]["sidecar"]
    test = sidecar["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "/_sidecar/healthz" in " ".join(test)
    assert "api" in compose["services"] and "healthcheck" in compose["services"]["api"]
    shutdown = float(sidecar["environment"]["SIDECAR_SHUTDOWN_TIMEOUT"])
    assert parse_duration(sidecar["stop_grace_period"]) > shutdown
    assert sidecar.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_compose_healthcheck_command_works(compose):
    test = compose["services"]["sidecar"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    # compose turns $$ into $
    argv = [a.replace("$$", "$") for a in test[1:]]
    _check_healthcheck_argv(argv, "8080")


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    lines, buf = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        if buf:
            word, _, rest = buf.partition(" ")
            lines.append((word.upper(), rest.strip()))
        buf = ""
    return lines


@pytest.fixture(scope="module")
def dockerfile():
    return dockerfile_instructions(DEPLOY / "Dockerfile")


def test_dockerfile_two_stages(dockerfile):
    args = {}
    for word, rest in dockerfile:
        if word == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k] = v
        if word == "FROM":
            break
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest) for word, rest in dockerfile if word == "FROM"]
    assert len(froms) == 2, froms
    m = re.fullmatch(r"swift:(\d+)\.(\d+)-bookworm AS build", froms[0], re.I)
    assert m, froms[0]
    image_version = (int(m.group(1)), int(m.group(2)))
    # The toolchain must read every manifest in the graph: the root one, and
    # swift-log >= 1.16 which declares swift-tools-version 6.2.
    assert image_version >= (6, 2), froms[0]
    root_manifest = ROOT / "Package.swift"
    if root_manifest.is_file():
        tools = re.match(r"// swift-tools-version:\s*(\d+)\.(\d+)", root_manifest.read_text())
        assert tools and image_version >= (int(tools.group(1)), int(tools.group(2))), froms[0]
    assert froms[1] == "debian:bookworm-slim"
    runs = [rest for word, rest in dockerfile if word == "RUN"]
    assert any("libssl-dev" in r and "libjansson-dev" in r for r in runs)
    assert any(all(p in r for p in ("libssl3", "libjansson4", "ca-certificates")) for r in runs)
    assert any("swift build -c release" in r for r in runs)
    assert any(w == "COPY" and r.startswith("--from=build") and "/usr/local/bin/authjs-sidecar" in r for w, r in dockerfile)


def test_dockerfile_runtime_stage(dockerfile):
    last_from = max(i for i, (w, _) in enumerate(dockerfile) if w == "FROM")
    final = dockerfile[last_from:]
    users = [r for w, r in final if w == "USER"]
    assert users, "final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert user.isdigit(), "numeric USER lets Kubernetes verify runAsNonRoot"
    assert ("EXPOSE", "8080") in final
    entry = [json.loads(r) for w, r in final if w == "ENTRYPOINT"]
    cmd = [json.loads(r) for w, r in final if w == "CMD"]
    assert entry == [["authjs-sidecar"]]
    assert cmd == [["serve"]]
    health = [r for w, r in final if w == "HEALTHCHECK"]
    assert len(health) == 1 and "/_sidecar/healthz" in health[0]


def healthcheck_argv(dockerfile) -> list[str]:
    (health,) = [r for w, r in dockerfile if w == "HEALTHCHECK"]
    cmd = health[health.index("CMD ") + 4:]
    return json.loads(cmd)


def _check_healthcheck_argv(argv: list[str], port: str) -> None:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} not installed")
    script = argv[-1]
    assert f"/dev/tcp/127.0.0.1/{port}" in script

    def run(p: int) -> int:
        patched = argv[:-1] + [script.replace(f"/dev/tcp/127.0.0.1/{port}", f"/dev/tcp/127.0.0.1/{p}")]
        return subprocess.run(patched, capture_output=True, timeout=10).returncode

    seen = []

    def respond(h):
        seen.append(h.path)
        return (200, [], b"ok") if h.path == "/_sidecar/healthz" else (404, [], b"")

    with http_server(respond) as srv:
        assert run(srv.server_address[1]) == 0
    assert seen == ["/_sidecar/healthz"]
    with http_server(lambda h: (503, [], b"starting")) as srv:
        assert run(srv.server_address[1]) != 0
    assert run(free_port()) != 0  # nothing listening


def test_dockerfile_healthcheck_command_works(dockerfile):
    argv = healthcheck_argv(dockerfile)
    assert argv[0] == "bash"
    _check_healthcheck_argv(argv, "8080")


def test_example_api_dockerfile_non_root():
    instr = dockerfile_instructions(DEPLOY / "examples/fastapi/Dockerfile")
    users = [r for w, r in instr if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


# --------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def k8s():
    objs: dict[tuple[str, str], dict] = {}
    for path in sorted(K8S.glob("*.y*ml")):
        for doc in load_all(path):
            if doc.get("kind") == "Kustomization":
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objs, f"duplicate {key}"
            objs[key] = doc
    return objs


def one(k8s, kind):
    found = [o for (k, _), o in k8s.items() if k == kind]
    assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def pod(k8s):
    return one(k8s, "Deployment")["spec"]["template"]


@pytest.fixture(scope="module")
def sidecar(pod):
    sidecars = [c for c in pod["spec"].get("initContainers", []) if c.get("restartPolicy") == "Always"]
    assert len(sidecars) == 1, "the sidecar must be a native sidecar (initContainer, restartPolicy: Always)"
    return sidecars[0]


@pytest.fixture(scope="module")
def api(pod):
    (api,) = pod["spec"]["containers"]
    return api


def test_k8s_apis_and_kustomization(k8s):
    kinds = {k for k, _ in k8s}
    assert kinds >= {"Deployment", "Service", "NetworkPolicy", "Secret"}
    (kust,) = load_all(K8S / "kustomization.yaml")
    listed = set(kust["resources"])
    on_disk = {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert one(k8s, "Deployment")["apiVersion"] == "apps/v1"
    assert one(k8s, "NetworkPolicy")["apiVersion"] == "networking.k8s.io/v1"


def test_k8s_native_sidecar(sidecar, pod):
    assert sidecar["name"] == "authjs-sidecar"
    assert "authjs-sidecar" in sidecar["image"]
    assert pod["spec"].get("restartPolicy", "Always") == "Always"
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert ports["http"] == 8080


def test_k8s_probes(sidecar):
    def path_of(probe):
        return probe["httpGet"]["path"]

    assert path_of(sidecar["livenessProbe"]) == "/_sidecar/healthz"
    assert path_of(sidecar["readinessProbe"]) == "/_sidecar/readyz"
    if "startupProbe" in sidecar:
        assert path_of(sidecar["startupProbe"]) == "/_sidecar/healthz"
    port_names = {p["name"] for p in sidecar["ports"]}
    ports = {p["containerPort"] for p in sidecar["ports"]}
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        if name in sidecar:
            port = sidecar[name]["httpGet"]["port"]
            assert port in port_names or port in ports, (name, port)


def test_k8s_termination_budget(pod, sidecar, api):
    env = env_list_to_dict(sidecar["env"])
    shutdown = int(env["SIDECAR_SHUTDOWN_TIMEOUT"]["value"])
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    sidecar_prestop = prestop_seconds(sidecar)
    assert sidecar_prestop > 0, "sidecar needs a preStop sleep"
    assert grace > shutdown + sidecar_prestop
    # Native sidecars are stopped only after the main containers exit, so the
    # whole sequence must fit in the grace period.
    api_graceful = 0
    cmd = api.get("command", []) + api.get("args", [])
    if "--timeout-graceful-shutdown" in cmd:
        api_graceful = int(cmd[cmd.index("--timeout-graceful-shutdown") + 1])
    assert grace > prestop_seconds(api) + api_graceful + sidecar_prestop + shutdown


def test_k8s_secret_ref(k8s, sidecar):
    env = env_list_to_dict(sidecar["env"])
    assert "value" not in env["AUTH_SECRET"], "AUTH_SECRET must not be inline"
    ref = env["AUTH_SECRET"]["valueFrom"]["secretKeyRef"]
    secret = k8s[("Secret", ref["name"])]
    assert ref["key"] in {**secret.get("data", {}), **secret.get("stringData", {})}
    for name, e in env.items():
        if name.startswith(("AUTH_SECRET", "NEXTAUTH_SECRET")):
            assert "secretKeyRef" in e.get("valueFrom", {}), name


def test_k8s_sidecar_env_and_config(k8s, pod, sidecar):
    env = env_list_to_dict(sidecar["env"])
    assert env["SIDECAR_UPSTREAM"]["value"] == "http://127.0.0.1:8000"
    assert env["SIDECAR_LISTEN"]["value"].endswith(":8080")
    if "SIDECAR_CONFIG" in env:
        cfg_path = env["SIDECAR_CONFIG"]["value"]
        mounts = {m["name"]: m["mountPath"] for m in sidecar.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        (vol_name,) = [n for n, mp in mounts.items() if cfg_path.startswith(mp.rstrip("/") + "/")]
        cm = k8s[("ConfigMap", volumes[vol_name]["configMap"]["name"])]
        cfg = yaml.safe_load(cm["data"][os.path.basename(cfg_path)])
        # File and env agree, whatever the precedence.
        assert cfg["upstream"] == env["SIDECAR_UPSTREAM"]["value"]
        assert cfg["listen"] == env["SIDECAR_LISTEN"]["value"]
        _check_sidecar_config(cfg)


def _hardened(c: dict, pod_sc: dict) -> None:
    sc = c.get("securityContext", {})
    assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, c["name"]
    assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, c["name"]
    assert sc.get("readOnlyRootFilesystem") is True, c["name"]
    assert sc.get("allowPrivilegeEscalation") is False, c["name"]
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], c["name"]
    assert not sc.get("capabilities", {}).get("add"), c["name"]
    assert not sc.get("privileged", False), c["name"]


def test_k8s_security_context(pod, sidecar, api):
    pod_sc = pod["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    _hardened(sidecar, pod_sc)
    _hardened(api, pod_sc)
    assert pod["spec"].get("automountServiceAccountToken") is False


def test_k8s_api_on_loopback_only(api):
    cmd = api.get("command", []) + api.get("args", [])
    assert "--host" in cmd and cmd[cmd.index("--host") + 1] == "127.0.0.1", cmd
    assert not api.get("ports"), "the API must not expose ports"


def test_k8s_service_targets_sidecar_only(k8s, pod, sidecar):
    svc = one(k8s, "Service")
    labels = pod["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    sidecar_ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    for port in svc["spec"]["ports"]:
        target = port["targetPort"]
        resolved = sidecar_ports.get(target, target)
        assert resolved == sidecar_ports["http"], port
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_k8s_network_policy(k8s, pod, sidecar):
    np = one(k8s, "NetworkPolicy")
    labels = pod["metadata"]["labels"]
    assert np["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert "Ingress" in np["spec"]["policyTypes"]
    sidecar_ports = {p["containerPort"] for p in sidecar["ports"]} | {p["name"] for p in sidecar["ports"]}
    rules = np["spec"]["ingress"]
    assert rules
    for rule in rules:
        assert rule.get("from"), "every ingress rule restricts sources"
        assert rule.get("ports"), "every ingress rule restricts ports"
        for p in rule["ports"]:
            assert p["port"] in sidecar_ports and p["port"] != 8000, p


# --------------------------------------------------------------------------- systemd

UNIT = DEPLOY / "systemd" / "authjs-sidecar.service"


def unit_directives(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_directives():
    svc = unit_directives(UNIT)["Service"]

    def last(key):
        assert key in svc, f"missing {key}="
        return svc[key][-1]

    expected = {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "",
        "EnvironmentFile": "/etc/authjs-sidecar/env",
        "ExecStart": "/usr/local/bin/authjs-sidecar serve",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
    }
    for key, value in expected.items():
        assert last(key) == value, f"{key}={last(key)!r}, expected {value!r}"
    assert set(last("RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in svc["SystemCallFilter"]
    env = dict(e.split("=", 1) for v in svc.get("Environment", []) for e in shlex.split(v))
    shutdown = float(env.get("SIDECAR_SHUTDOWN_TIMEOUT", 25))
    assert parse_duration(last("TimeoutStopSec")) > shutdown


VERIFY_COMPLAINTS = re.compile(
    r"unknown (key|section|lvalue)|failed to parse|invalid|ignoring|not supported|deprecated|"
    r"unit configured to use kill|bad",
    re.I,
)


def _verify(unit_text: str, tmp_path: Path) -> tuple[int, str]:
    unit = tmp_path / "authjs-sidecar.service"
    unit.write_text(unit_text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    return proc.returncode, (proc.stdout + proc.stderr)


@pytest.fixture
def verifiable_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd): cannot verify the unit")
    fake = tmp_path / "bin" / "authjs-sidecar"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/authjs-sidecar serve" in text
    # The real binary is not installed here: point ExecStart at a stand-in so
    # verify only judges the directives.
    return text.replace("ExecStart=/usr/local/bin/authjs-sidecar", f"ExecStart={fake}")


def test_systemd_analyze_verify(verifiable_unit, tmp_path):
    rc, output = _verify(verifiable_unit, tmp_path)
    assert rc == 0, output
    complaints = [l for l in output.splitlines() if VERIFY_COMPLAINTS.search(l)]
    assert not complaints, "systemd-analyze verify complained:\n" + output


def test_systemd_analyze_verify_detects_unknown_directives(verifiable_unit, tmp_path):
    """Guard against a vacuous pass: verify exits 0 on unknown keys, so the
    test above must be reading its output."""
    broken = verifiable_unit.replace("[Service]\n", "[Service]\nProtectEverything=yes\n", 1)
    rc, output = _verify(broken, tmp_path)
    assert "ProtectEverything" in output and VERIFY_COMPLAINTS.search(output), output


# --------------------------------------------------------------------------- sidecar.yaml


def _check_sidecar_config(cfg: dict) -> None:
    assert re.fullmatch(r"(unix:/.+|[\w.\[\]:-]+:\d+)", cfg["listen"]), cfg["listen"]
    assert re.match(r"(https?://|unix:/|echo$)", cfg["upstream"]), cfg["upstream"]
    for route in cfg.get("routes", []):
        assert route["path"].startswith("/"), route
        assert route.get("match", "prefix") in {"prefix", "exact", "glob"}, route
        assert route.get("mode", "required") in {"required", "optional", "public"}, route
        for m in route.get("methods", []):
            assert m == m.upper(), route
        for req in route.get("require", []):
            assert "claim" in req and ({"contains", "equals"} & set(req)), req
            if route.get("mode") == "public":
                pytest.fail(f"public route with claim requirements: {route}")


def test_sidecar_yaml_example():
    (cfg,) = load_all(DEPLOY / "sidecar.yaml")
    for key in ["listen", "upstream", "public_paths", "cookie_names", "clock_tolerance", "cors", "routes", "identity_headers"]:
        assert key in cfg, key
    _check_sidecar_config(cfg)
    assert isinstance(cfg["clock_tolerance"], int)
    assert cfg["cors"]["origins"] and all(o.startswith("https://") for o in cfg["cors"]["origins"])
    assert {r["match"] for r in cfg["routes"]} == {"prefix", "exact", "glob"}
    assert {r["mode"] for r in cfg["routes"]} == {"required", "optional", "public"}
    requires = [q for r in cfg["routes"] for q in r.get("require", [])]
    assert {"claim": "roles", "contains": "admin"} in requires
    assert {"claim": "email_verified", "equals": True} in requires
    # Mapped claim headers must start with X-Auth- so the sidecar's stripping
    # of client-supplied x-auth-* headers protects them too.
    for claim, header in cfg["identity_headers"].items():
        assert header.lower().startswith("x-auth-"), (claim, header)
    for name in cfg["cookie_names"]:
        assert "session-token" in name


# --------------------------------------------------------------------------- forward auth


def test_traefik_forward_auth():
    (cfg,) = load_all(DEPLOY / "forward-auth/traefik.yml")
    http_cfg = cfg["http"]
    mws = http_cfg["middlewares"]
    fa_name, fa = next((n, m["forwardAuth"]) for n, m in mws.items() if "forwardAuth" in m)
    assert fa["address"].endswith("/_sidecar/auth")
    assert fa.get("trustForwardHeader", False) is False
    assert set(IDENTITY_HEADERS) <= set(fa["authResponseHeaders"])
    regex = re.compile(fa["authResponseHeadersRegex"])
    for h in IDENTITY_HEADERS + ["x-auth-sub", "X_Auth_Sub", "X-Auth-Org"]:
        assert regex.search(h), h
    for h in ["Cookie", "X-Authorization", "Authorization"]:
        assert not regex.search(h), h
    assert "Cookie" in fa["authRequestHeaders"]
    for router in http_cfg["routers"].values():
        chain = router["middlewares"]
        assert fa_name in chain
        cors = [n for n in chain if "headers" in mws.get(n, {})]
        for n in cors:  # CORS (preflight) handled before the auth check
            assert chain.index(n) < chain.index(fa_name)
        assert router["service"] in http_cfg["services"]


def test_nginx_conf_static():
    text = (DEPLOY / "forward-auth/nginx.conf").read_text()
    assert re.search(r"location\s*=\s*/_sidecar/auth\s*\{[^}]*\binternal;", text)
    assert re.search(r"auth_request\s+/_sidecar/auth;", text)
    for h in IDENTITY_HEADERS:
        var = h.lower().replace("-", "_")
        assert re.search(rf"auth_request_set\s+\$(\w+)\s+\$upstream_http_{var};", text), h
        assert re.search(rf"proxy_set_header\s+{h}\s+\$", text), h
    assert "OPTIONS" in text


def test_caddyfile_static():
    text = (DEPLOY / "forward-auth/Caddyfile").read_text()
    assert re.search(r"^\s*rewrite /_sidecar/auth\??$", text, re.M)
    assert re.search(r"^\s*method GET", text, re.M)
    for h in IDENTITY_HEADERS:
        # copied only when the sidecar sent it (old copy_headers leaked the
        # literal placeholder for absent headers)
        ph = re.escape(f"{{http.reverse_proxy.header.{h}}}")
        m = re.search(rf"@(\w+) expression `type\({ph}\) == string && {ph} != \"\"`", text)
        assert m, h
        assert f"request_header @{m.group(1)} {h} {{http.reverse_proxy.header.{h}}}" in text, h
    assert "request_header -X-Auth-*" in text
    assert "OPTIONS" in text


def _caddy_adapt(path: Path) -> dict:
    proc = subprocess.run(
        ["caddy", "adapt", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_caddyfile_adapts_in_safe_order():
    if shutil.which("caddy") is None:
        pytest.skip("caddy not installed (apt-get install caddy)")
    cfg = _caddy_adapt(DEPLOY / "forward-auth/Caddyfile")
    order: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            h = node.get("handler")
            if h == "headers" and "X-Auth-*" in node.get("request", {}).get("delete", []):
                order.append("strip")
            elif h == "reverse_proxy":
                uri = node.get("rewrite", {}).get("uri")
                order.append("auth" if (uri or "").startswith("/_sidecar/auth") else "proxy")
            for k, v in node.items():
                if k != "handle_response":
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(cfg["apps"]["http"]["servers"])
    assert order == ["strip", "auth", "proxy"], order


# --- functional runs of nginx / Caddy against a fake sidecar and a fake app

CLAIMS = {"sub": "user-1", "name": "Zoë", "roles": ["admin"]}
CLAIMS_B64 = base64.urlsafe_b64encode(json.dumps(CLAIMS).encode()).rstrip(b"=").decode()


@contextmanager
def fake_sidecar_and_app():
    auth_calls: list[dict] = []

    def sidecar(h):
        auth_calls.append({"path": h.path, "headers": dict(h.headers.items())})
        if urllib.parse.urlsplit(h.path).path != "/_sidecar/auth":
            return 404, [], b""
        if "authjs.session-token=good" in (h.headers.get("Cookie") or ""):
            return 200, [
                ("X-Auth-Sub", "user-1"),
                ("X-Auth-Name", "utf-8''Zo%C3%AB"),
                ("X-Auth-Claims", CLAIMS_B64),
            ], b""
        body = json.dumps({"error": "invalid_token", "reason": "missing", "request_id": "t"}).encode()
        return 401, [("Content-Type", "application/json")], body

    def app(h):
        body = json.dumps({"path": h.path, "method": h.command, "headers": [[k.lower(), v] for k, v in h.headers.items()]})
        return 200, [("Content-Type", "application/json")], body.encode()

    with http_server(sidecar) as side, http_server(app) as upstream:
        yield side.server_address[1], upstream.server_address[1], auth_calls


def _exercise_proxy(port: int, auth_calls: list[dict]) -> None:
    base = f"http://127.0.0.1:{port}"
    # 1. no session -> 401 from the auth check, app never reached
    status, _, body = request(base + "/api/items")
    assert status == 401, body
    assert json.loads(body)["error"] == "invalid_token"

    # 2. valid session, client tries to spoof identity headers
    auth_calls.clear()
    status, _, body = request(
        base + "/api/items?x=1",
        headers={
            "Cookie": "authjs.session-token=good",
            "X-Auth-Sub": "attacker",
            "X-Auth-Email": "attacker@example.com",
            "X-Auth-Picture": "https://evil.example/x.png",
            # the underscore spelling, which Django/WSGI upstreams read as X-Auth-Sub
            "X_Auth_Sub": "attacker-underscore",
            "x_AUTH_email": "attacker-mixed-case@example.com",
        },
    )
    assert status == 200, body
    seen = json.loads(body)
    headers = seen["headers"]
    subs = [v for k, v in headers if k.replace("_", "-") == "x-auth-sub"]
    assert subs == ["user-1"], headers
    assert [v for k, v in headers if k == "x-auth-name"] == ["utf-8''Zo%C3%AB"]
    assert [v for k, v in headers if k == "x-auth-claims"] == [CLAIMS_B64]
    assert not [v for k, v in headers if k.replace("_", "-") in ("x-auth-email", "x-auth-picture") and v], headers
    assert seen["path"] == "/api/items?x=1"
    (call,) = auth_calls
    assert call["path"] == "/_sidecar/auth"
    lower = {k.lower(): v for k, v in call["headers"].items()}
    assert "authjs.session-token=good" in lower.get("cookie", "")
    assert lower.get("x-forwarded-method") == "GET"
    assert lower.get("x-forwarded-uri") == "/api/items?x=1"

    # 3. CORS preflight is answered without an auth check
    auth_calls.clear()
    status, resp_headers, _ = request(
        base + "/api/items",
        method="OPTIONS",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert status == 204
    assert resp_headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert auth_calls == []

    # 4. the sidecar's own endpoints are not exposed
    status, _, _ = request(base + "/_sidecar/healthz", headers={"Cookie": "authjs.session-token=good"})
    assert status == 404


def test_nginx_forward_auth_runs(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx not installed (apt-get install nginx-light)")
    listen = free_port()
    with fake_sidecar_and_app() as (side_port, app_port, auth_calls):
        conf = (DEPLOY / "forward-auth/nginx.conf").read_text()
        conf = conf.replace("listen 8081;", f"listen 127.0.0.1:{listen};")
        conf = conf.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{side_port};")
        conf = conf.replace("server 127.0.0.1:3000;", f"server 127.0.0.1:{app_port};")
        conf = conf.replace("pid /tmp/nginx-authjs.pid;", f"pid {tmp_path}/nginx.pid;")
        conf = conf.replace("http {", f"http {{\n    access_log off;\n    client_body_temp_path {tmp_path}/body;\n"
                            f"    proxy_temp_path {tmp_path}/proxy;\n", 1)
        path = tmp_path / "nginx.conf"
        path.write_text(conf)
        check = subprocess.run([nginx, "-t", "-c", str(path), "-e", str(tmp_path / "error.log")],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen(
            [nginx, "-c", str(path), "-e", str(tmp_path / "error.log"), "-g", "daemon off; master_process off;"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            wait_for_port(listen, proc)
            _exercise_proxy(listen, auth_calls)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_caddy_forward_auth_runs(tmp_path):
    if shutil.which("caddy") is None:
        pytest.skip("caddy not installed (apt-get install caddy)")
    listen = free_port()
    with fake_sidecar_and_app() as (side_port, app_port, auth_calls):
        text = (DEPLOY / "forward-auth/Caddyfile").read_text()
        text = text.replace(":8081 {", f"http://127.0.0.1:{listen} {{")
        assert "reverse_proxy 127.0.0.1:8080" in text and "reverse_proxy 127.0.0.1:3000" in text
        text = text.replace("reverse_proxy 127.0.0.1:8080", f"reverse_proxy 127.0.0.1:{side_port}")
        text = text.replace("reverse_proxy 127.0.0.1:3000", f"reverse_proxy 127.0.0.1:{app_port}")
        path = tmp_path / "Caddyfile"
        path.write_text(text)
        env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
               "HOME": str(tmp_path)}
        proc = subprocess.Popen(
            ["caddy", "run", "--config", str(path), "--adapter", "caddyfile"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        try:
            wait_for_port(listen, proc)
            _exercise_proxy(listen, auth_calls)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- examples


def test_examples_present():
    fastapi = DEPLOY / "examples/fastapi"
    for name in ["app.py", "authjs_identity.py", "test_identity.py", "requirements.txt", "README.md"]:
        assert (fastapi / name).is_file(), name
    hb = DEPLOY / "examples/swift-hummingbird"
    manifest = (hb / "Package.swift").read_text()
    assert manifest.startswith("// swift-tools-version:6.0")
    assert '.package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1")' in manifest
    assert (hb / "README.md").is_file()
    sources = "".join(p.read_text() for p in (hb / "Sources").rglob("*.swift"))
    for h in IDENTITY_HEADERS:
        assert h in sources, h
    assert '"me"' in sources
