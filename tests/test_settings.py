"""Settings precedence (flag > TIDEGATE_<NAME> > config file > default) and `config show`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest

from cp.settings import CPSettings
from dp.settings import DPSettings
from shared.cli import build_parser
from shared.settings import MASK, SettingsError, from_sources, mask_dsn, masked
from tests.procs import TIDEGATE


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    conf = write(tmp_path / "dp.toml", 'status_listen = "0.0.0.0:1"\nproxy_listen = "0.0.0.0:2"\n'
                                       'proxy_ssl_listen = "0.0.0.0:3"\n')
    args = build_parser().parse_args(["dp", "start", "--config", str(conf),
                                      "--status-listen", "0.0.0.0:9"])
    env = {"TIDEGATE_STATUS_LISTEN": "0.0.0.0:8", "TIDEGATE_PROXY_LISTEN": "0.0.0.0:7"}
    s = from_sources(DPSettings, args, env)
    assert s.status_listen == "0.0.0.0:9"        # flag
    assert s.proxy_listen == "0.0.0.0:7"         # env over file
    assert s.proxy_ssl_listen == "0.0.0.0:3"     # file over default
    assert s.cluster_server_name == "kong_clustering"  # default


def test_config_file_from_environment_and_types(tmp_path: Path) -> None:
    conf = write(tmp_path / "cp.toml", 'enforce_rbac = true\nevent_hooks_nice = 5\n'
                                       'event_hooks_timeout = 3\ncluster_cert = "c.pem"\n')
    s = CPSettings.from_sources(env={"TIDEGATE_CONFIG": str(conf)})
    assert s.enforce_rbac is True and s.event_hooks_nice == 5
    assert s.event_hooks_timeout == 3.0 and isinstance(s.event_hooks_timeout, float)
    assert s.cluster_cert == Path("c.pem")
    # Environment strings are parsed as the field's type, too.
    s = CPSettings.from_sources(env={"TIDEGATE_EVENT_HOOKS_TIMEOUT": "2.5"})
    assert s.event_hooks_timeout == 2.5
    labels = write(tmp_path / "dp.toml", 'workers = 4\nlabels = {region = "eu"}\n')
    d = DPSettings.from_sources(env={"TIDEGATE_CONFIG": str(labels)})
    assert d.workers == 4 and d.labels == {"region": "eu"}


@pytest.mark.parametrize(("text", "message"), [
    ('pg_dns = "x"\nadmin_lisen = "y"\n', "unknown keys admin_lisen, pg_dns"),
    ("enforce_rbac = 3\n", "enforce_rbac: 3: expected bool"),
    ("admin_listen = [1]\n", "admin_listen: [1]: expected str"),
    ("admin_listen = \n", "invalid TOML"),
])
def test_bad_config_file(tmp_path: Path, text: str, message: str) -> None:
    conf = write(tmp_path / "cp.toml", text)
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_sources(CPSettings, env={}, config=conf)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="TIDEGATE_EVENT_HOOKS_NICE"):
        CPSettings.from_sources(env={"TIDEGATE_EVENT_HOOKS_NICE": "high"})


def test_masking() -> None:
    assert mask_dsn("postgresql://tg:s3cret@db:5432/tg") == f"postgresql://tg:{MASK}@db:5432/tg"
    assert mask_dsn("host=db password=s3cret dbname=tg") == f"host=db password={MASK} dbname=tg"
    assert mask_dsn("host=db password='a b' user=x") == f"host=db password={MASK} user=x"
    assert mask_dsn("postgresql://tg@db/tg") == "postgresql://tg@db/tg"
    s = CPSettings.from_sources(env={"TIDEGATE_PASSWORD": "pw", "TIDEGATE_CLUSTER_KEY": "/k.pem",
                                     "TIDEGATE_PG_DSN": "postgresql://u:pw@h/d"})
    shown = masked(s)
    assert shown["password"] == MASK
    assert shown["cluster_key"] == "/k.pem"  # a key *path* is not a secret
    assert shown["pg_dsn"] == f"postgresql://u:{MASK}@h/d"


def run_show(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    return subprocess.run([*TIDEGATE, "config", "show", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_config_show_process(tmp_path: Path) -> None:
    conf = write(tmp_path / "cp.toml", 'admin_listen = "0.0.0.0:9001"\npassword = "from-file"\n'
                                       'cluster_key = "/etc/tidegate/cluster.key"\n')
    env = {"TIDEGATE_CONFIG": str(conf), "TIDEGATE_PG_DSN": "postgresql://tg:hunter2@db/tg"}
    out = run_show("--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["values"]["admin_listen"] == "0.0.0.0:9001"
    assert shown["sources"]["admin_listen"] == "file" and shown["sources"]["pg_dsn"] == "env"
    assert shown["values"]["cluster_key"] == "/etc/tidegate/cluster.key"
    assert "hunter2" not in out.stdout and "from-file" not in out.stdout
    # The text form: key = value  # source, secrets masked, and loadable as TOML again.
    text = run_show("--plane", "dp", "--config", str(write(tmp_path / "dp.toml", "workers = 2\n")),
                    env={"TIDEGATE_STATUS_LISTEN": "0.0.0.0:8100"})
    assert text.returncode == 0, text.stderr
    assert 'status_listen = "0.0.0.0:8100"  # env' in text.stdout
    assert "workers = 2  # file" in text.stdout
    again = write(tmp_path / "again.toml", text.stdout)
    assert from_sources(DPSettings, env={}, config=again).status_listen == "0.0.0.0:8100"


def test_unknown_key_is_a_clear_error_from_the_cli(tmp_path: Path) -> None:
    conf = write(tmp_path / "dp.toml", 'pg_dsn = "x"\n')  # a CP setting given to a DP
    out = run_show("--plane", "dp", "--config", str(conf), env={})
    assert out.returncode == 2
    assert "unknown keys pg_dsn" in out.stderr and "Traceback" not in out.stderr
    start = subprocess.run([*TIDEGATE, "dp", "start", "--config", str(conf)],
                           capture_output=True, text=True, timeout=60)
    assert start.returncode == 2 and "unknown keys pg_dsn" in start.stderr


def _example(kind: object, name: str) -> tuple[str, object]:
    """A flag value for a field and the setting it must produce."""
    text = str(kind)
    if "bool" in text:
        return "on", True
    if "dict" in text:
        return "a=1,b=2", {"a": "1", "b": "2"}
    if "Path" in text:
        return f"/tmp/{name}", Path(f"/tmp/{name}")
    if "int" in text:
        return "7", 7
    if "float" in text:
        return "2.5", 2.5
    return f"{name}-value", f"{name}-value"


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    groups = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return groups.choices[name]  # type: ignore[no-any-return]


@pytest.mark.parametrize("plane, cls", [("cp", CPSettings), ("dp", DPSettings)])
def test_every_setting_has_a_flag(plane: str, cls: type) -> None:
    """Each field of the settings can be given as a flag of `tidegate <plane> start`, and the
    flag wins over the environment."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    parser = build_parser()
    start = _subcommand(_subcommand(parser, plane), "start")
    for f in dataclasses.fields(cls):
        flags = [a for a in start._actions if a.dest == f.name]
        assert flags, f"no flag for {f.name}"
        raw, expected = _example(hints[f.name], f.name)
        choices = {"workers": "3", "cluster_mtls": "pki", "log_format": "json"}
        if f.name in choices:
            raw = expected = choices[f.name]
        argv = [plane, "start", flags[0].option_strings[0]]
        if flags[0].nargs != 0:  # not a switch like --enforce-rbac
            argv.append(raw)
        args = parser.parse_args(argv)
        got = from_sources(cls, args, env={f"TIDEGATE_{f.name.upper()}": "ignored"})
        assert getattr(got, f.name) == expected, f.name
