"""deploy/: every manifest parsed and checked against the real CLI and settings.

No container engine or cluster runs here, so this is the validation: each command line goes
through the real `tidegate` argparse parser, each TIDEGATE_* name must be a settings field, the
effective listen addresses (flags > env, via the real `from_sources`) must match the declared
ports and probes, and every file a command reads must sit on a Secret or ConfigMap mount.
"""

from __future__ import annotations

import argparse
import configparser
import dataclasses
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from cp.settings import CPSettings
from dp.settings import DPSettings
from shared import declarative
from shared.cli import build_parser
from shared.settings import from_sources, split_listen

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PLANES: dict[str, type] = {"cp": CPSettings, "dp": DPSettings}
FILE_FIELDS = ("cluster_cert", "cluster_key", "cluster_ca_cert", "declarative_config")


def parse_command(argv: list[str]) -> argparse.Namespace:
    """The real parser's reading of a command line; an unknown flag fails the test."""
    if argv and Path(argv[0]).name == "tidegate":
        argv = argv[1:]
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"not a valid tidegate command line: {argv}")


def env_names(plane: str) -> set[str]:
    fields = dataclasses.fields(PLANES[plane])
    return {f"TIDEGATE_{f.name.upper()}" for f in fields} | {"TIDEGATE_CONFIG"}


def effective(argv: list[str], env: dict[str, str]) -> tuple[str, Any]:
    """(plane, settings) for a `tidegate cp|dp start` command line run with `env`."""
    args = parse_command(argv)
    assert args.group in PLANES and getattr(args, f"{args.group}_command") == "start", argv
    unknown = {k for k in env if k.startswith("TIDEGATE_")} - env_names(args.group)
    assert not unknown, f"not {args.group} settings: {unknown}"
    return args.group, from_sources(PLANES[args.group], args, env)


def listen_ports(plane: str, settings: Any) -> dict[str, int]:
    names = ("admin_listen", "cluster_listen") if plane == "cp" else (
        "proxy_listen", "proxy_ssl_listen", "status_listen")
    return {n: split_listen(getattr(settings, n))[1] for n in names
            if getattr(settings, n) != "off"}


def under(path: Path, mounts: dict[str, Any]) -> tuple[str, Any]:
    """The mount (path, source) a file lives on."""
    for mount, source in mounts.items():
        if path.is_relative_to(mount):
            return mount, source
    pytest.fail(f"{path} is on no mounted volume ({list(mounts)})")


# --- Kubernetes ---------------------------------------------------------------------------------

def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_docs() if d["kind"] == kind}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """Literal values, and secretKeyRef values resolved from the Secrets in the manifests
    (or a placeholder for Secrets created out of band)."""
    secrets = by_kind("Secret")
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        secret = secrets.get(ref["name"])
        env[item["name"]] = secret["stringData"][ref["key"]] if secret else "from-secret"
    return env


def tidegate_pods() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, tidegate container) for every workload running the image."""
    out = []
    for kind in ("Deployment", "DaemonSet"):
        for name, doc in by_kind(kind).items():
            pod = doc["spec"]["template"]["spec"]
            out += [(name, pod, c) for c in pod["containers"] if c["image"].startswith("tidegate")]
    return out


def test_k8s_has_the_expected_workloads() -> None:
    deployments = by_kind("Deployment")
    assert deployments["tidegate-cp"]["spec"]["replicas"] == 2
    assert "tidegate-postgres" in by_kind("StatefulSet")
    planes = {}
    for name, _pod, container in tidegate_pods():
        plane, settings = effective([*container.get("command", []), *container["args"]],
                                    container_env(container))
        planes[name] = (plane, settings)
    assert planes["tidegate-cp"][0] == "cp"
    assert planes["tidegate-dp"][0] == "dp" and planes["tidegate-dp"][1].cp
    dbless = planes["tidegate-dp-dbless"]
    assert dbless[0] == "dp" and dbless[1].declarative_config and not dbless[1].cp


@pytest.mark.parametrize("workload", [w for w, _, _ in tidegate_pods()])
def test_k8s_container(workload: str) -> None:
    _, pod, container = next(p for p in tidegate_pods() if p[0] == workload)
    plane, settings = effective([*container.get("command", []), *container["args"]],
                                container_env(container))
    # Ports: exactly the listeners, reachable from outside the pod's loopback.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    listens = listen_ports(plane, settings)
    assert sorted(ports.values()) == sorted(listens.values())
    for name in listens:
        assert split_listen(getattr(settings, name))[0] == "0.0.0.0", name
    # Probes: a DP's readiness is /status/ready and liveness /health, on the status port.
    if plane == "dp":
        status = split_listen(settings.status_listen)[1]
        for probe, path in (("readinessProbe", "/status/ready"), ("livenessProbe", "/health")):
            get = container[probe]["httpGet"]
            assert get["path"] == path
            assert ports.get(get["port"], get["port"]) == status
    # Files the command reads: on read-only Secret/ConfigMap mounts, under keys that exist.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {Path(m["mountPath"]): (m, volumes[m["name"]]) for m in container["volumeMounts"]}
    for field in FILE_FIELDS:
        path = getattr(settings, field, None)
        if path is None:
            continue
        _, (mount, volume) = under(Path(path), mounts)
        assert mount.get("readOnly") is True, field
        if "secret" in volume:
            # Cluster certificates: a `kubectl create secret tls` Secret (tls.crt / tls.key).
            assert Path(path).name in ("tls.crt", "tls.key", "ca.crt"), path
        else:
            cm = by_kind("ConfigMap")[volume["configMap"]["name"]]
            text = cm["data"][Path(path).name]
            declarative.load_text(text.encode())  # the kong.yml it ships must load
    # State under the prefix is writable; the root filesystem is not; not root.
    assert any(Path(settings.prefix) == p for p in mounts)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_cp_service_and_database() -> None:
    service = by_kind("Service")["tidegate-cp"]["spec"]
    assert service.get("type", "ClusterIP") == "ClusterIP"
    assert {p["port"] for p in service["ports"]} == {8001, 8005}
    # TIDEGATE_PG_DSN comes from the Secret and points at the PostgreSQL Service and its user.
    _, _, cp = next(p for p in tidegate_pods() if p[0] == "tidegate-cp")
    ref = next(e for e in cp["env"] if e["name"] == "TIDEGATE_PG_DSN")["valueFrom"]
    secret = by_kind("Secret")[ref["secretKeyRef"]["name"]]["stringData"]
    dsn = secret[ref["secretKeyRef"]["key"]]
    pg = by_kind("StatefulSet")["tidegate-postgres"]
    pg_env = {e["name"]: e for e in pg["spec"]["template"]["spec"]["containers"][0]["env"]}
    user, db = pg_env["POSTGRES_USER"]["value"], pg_env["POSTGRES_DB"]["value"]
    assert dsn == (f"postgresql://{user}:{secret['password']}@"
                   f"{pg['spec']['serviceName']}:5432/{db}")
    assert pg["spec"]["serviceName"] in by_kind("Service")
    # Data planes dial the CP Service's cluster port.
    _, _, dp = next(p for p in tidegate_pods() if p[0] == "tidegate-dp")
    _, settings = effective(dp["args"], container_env(dp))
    host, port = split_listen(settings.cp)
    assert host == "tidegate-cp" and port == 8005


def test_k8s_services_select_their_pods() -> None:
    pods = {name: (pod, c) for name, pod, c in tidegate_pods()}
    for name, svc in by_kind("Service").items():
        selector = svc["spec"]["selector"]
        matches = [(w, c) for w, (_, c) in pods.items()
                   if by_kind("Deployment")[w]["spec"]["template"]["metadata"]["labels"]
                   .items() >= selector.items()]
        if selector.get("app.kubernetes.io/component") == "postgres":
            continue
        assert len(matches) == 1, name
        names = {p["name"] for p in matches[0][1]["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, (name, port)


# --- compose ------------------------------------------------------------------------------------

def test_compose() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "cp", "dp"}
    pg_env = services["postgres"]["environment"]
    for name in ("cp", "dp"):
        svc = services[name]
        plane, settings = effective(svc["command"], {k: str(v) for k, v in
                                                     svc.get("environment", {}).items()})
        assert plane == name
        published = {int(p.rsplit(":", 1)[1]) for p in svc["ports"]}
        assert published <= set(listen_ports(plane, settings).values())
        mounts = {Path(v.split(":")[1]): v for v in svc.get("volumes", [])}
        for field in FILE_FIELDS:
            if getattr(settings, field, None) is not None:
                under(Path(getattr(settings, field)), mounts)
        if plane == "cp":
            assert settings.pg_dsn == (f"postgresql://{pg_env['POSTGRES_USER']}:"
                                       f"{pg_env['POSTGRES_PASSWORD']}@postgres:5432/"
                                       f"{pg_env['POSTGRES_DB']}")
            cluster_port = split_listen(settings.cluster_listen)[1]
        else:
            assert settings.cp == f"cp:{cluster_port}"
            assert settings.status_listen.startswith("0.0.0.0:")  # published to the host


# --- systemd ------------------------------------------------------------------------------------

HARDENING = ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
             "CapabilityBoundingSet", "ProtectKernelTunables", "ProtectKernelModules",
             "ProtectControlGroups", "RestrictSUIDSGID", "ReadWritePaths")


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(path.read_text())
    return unit


def read_env_file(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.mark.parametrize("plane", ["cp", "dp"])
def test_systemd_unit(plane: str) -> None:
    unit = read_unit(DEPLOY / "systemd" / f"tidegate-{plane}.service")
    service = unit["Service"]
    assert service["User"] == "tidegate" and service["Group"] == "tidegate"
    assert service["Restart"] == "on-failure"
    for key in HARDENING:
        assert key in service, key
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""
    assert service["EnvironmentFile"] == f"/etc/tidegate/{plane}.env"
    env = read_env_file(DEPLOY / "systemd" / f"{plane}.env.example")
    got, settings = effective(shlex.split(service["ExecStart"]), env)
    assert got == plane
    # The state directory the command writes is the one the sandbox leaves writable.
    assert str(settings.prefix) in service["ReadWritePaths"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


# --- image --------------------------------------------------------------------------------------

def test_dockerfile() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    code = [line for line in lines if line and not line.startswith("#")]
    assert code[0] == "FROM python:3.11-slim"
    assert any(line.startswith("RUN pip install .") for line in code)
    user = next(line for line in reversed(code) if line.startswith("USER ")).split()[1]
    assert user.split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["tidegate"]' in code
    # The CP gets TIDEGATE_PG_DSN in containers: no PostgreSQL server in the image.
    assert not any("postgresql" in line and "apt-get" in line for line in code)
