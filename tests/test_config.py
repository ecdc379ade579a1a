"""Configuration precedence: flags > PICA_* environment > TOML file > defaults; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pica.config import ConfigError, load_config


def test_defaults() -> None:
    config = load_config(env={})
    assert (config.host, config.port, config.tcp_port) == ("127.0.0.1", 8080, 8081)
    assert config.data_dir == Path("pica-data") and config.sqlite.synchronous == "FULL"


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    toml = tmp_path / "pica.toml"
    toml.write_text('port = 9000\ntcp_port = 9001\n[limits]\nidle_timeout = 120\nmax_frame_bytes = 1000\n')
    env = {"PICA_TCP_PORT": "9100", "PICA_LIMITS_MAX_FRAME_BYTES": "2000"}
    config = load_config(config_file=toml, env=env, overrides={"tcp_port": 9200, "port": None})
    assert config.port == 9000  # file
    assert config.tcp_port == 9200  # flag beats env and file
    assert config.limits.max_frame_bytes == 2000  # env beats file
    assert config.limits.idle_timeout == 120.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PICA_PORT": "eighty"}, "port: expected an integer"),
        ({"PICA_LIMITS_MAX_FRAME_BYTES": "0"}, "limits.max_frame_bytes"),
        ({"PICA_SQLITE_SYNCHRONOUS": "sometimes"}, "sqlite.synchronous: expected one of FULL, NORMAL"),
        ({"PICA_LIMITS_IDLE_TIMEOUT": "5"}, "limits.idle_timeout"),
        ({"PICA_STORE": "mysql://db"}, "store: expected sqlite:///path or postgresql://"),
        ({"PICA_CLUSTER": "nats://bus"}, "cluster: expected a redis:// URL"),
        ({"PICA_WORKERS": "0"}, "workers: must be at least 1"),
        ({"PICA_CLUSTER": "redis://127.0.0.1:6379"}, "cluster: cluster mode needs a shared store"),
        (
            {"PICA_CLUSTER": "redis://127.0.0.1:6379", "PICA_STORE": "postgresql://127.0.0.1/pica"},
            "auth.token_secret: cluster mode needs one secret shared by every node",
        ),
        ({"PICA_REDIS_NODE_TTL": "0.5"}, "redis.node_ttl: must be longer than redis.heartbeat_interval"),
        ({"PICA_POSTGRES_WRITE_LANES": "0"}, "postgres.write_lanes: must be at least 1"),
        ({"PICA_SQLITE_COMMIT_DELAY_MS": "150"}, "sqlite.commit_delay_ms: must be at most 100"),
        ({"PICA_AUTH_SESSION_READ_DELAY": "0.5"}, r"auth\.session_read_delay: must be at most 0\.1 seconds, got 0\.5"),
        ({"PICA_AUTH_SESSION_READ_DELAY": "-1"}, r"auth\.session_read_delay: must not be negative"),
    ],
)
def test_bad_values_name_their_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_unknown_keys_in_file_are_errors(tmp_path: Path) -> None:
    toml = tmp_path / "pica.toml"
    toml.write_text("[limits]\nmax_fram_bytes = 10\n")
    with pytest.raises(ConfigError, match=r"limits\.max_fram_bytes"):
        load_config(config_file=toml, env={})


def test_cli_rejects_bad_config_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from pica.cli.main import main

    assert main(["serve", "--port", "70000"]) == 2
    assert "port" in capsys.readouterr().err


def test_cluster_mode_from_flags_env_and_file(tmp_path: Path) -> None:
    toml = tmp_path / "pica.toml"
    toml.write_text('store = "postgresql://pica@db:5432/pica"\n[postgres]\nwrite_lanes = 8\n[redis]\nprefix = "a:"\n')
    env = {"PICA_AUTH_TOKEN_SECRET": "s" * 32, "PICA_REDIS_PREFIX": "b:"}
    config = load_config(config_file=toml, env=env,
                         overrides={"cluster": "redis://bus:6379/0", "node_id": "n7", "workers": 2})
    assert (config.store, config.cluster, config.node_id, config.workers) == (
        "postgresql://pica@db:5432/pica", "redis://bus:6379/0", "n7", 2)
    assert (config.postgres.write_lanes, config.redis.prefix) == (8, "b:")
