"""Docs stay true: every configuration key is documented in the README."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pica import config

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {"limits": config.LimitsConfig, "auth": config.AuthConfig, "sqlite": config.SqliteConfig,
            "postgres": config.PostgresConfig, "redis": config.RedisConfig,
            "log": config.LogConfig, "metrics": config.MetricsConfig, "tls": config.TlsConfig,
            "jobs": config.JobsConfig,
            "before_send": config.BeforeSendConfig, "event_stream": config.EventStreamConfig,
            "mqtt": config.MqttConfig, "xmpp": config.XmppConfig, "media": config.MediaConfig,
            "bots": config.BotsConfig,
            "push": config.PushConfig, "calls": config.CallsConfig, "turn": config.TurnConfig,
            "conversations": config.ConversationsConfig, "annotations": config.AnnotationsConfig,
            "previews": config.PreviewsConfig}


def test_every_config_key_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for field in dataclasses.fields(config.Config):
        if field.name in SECTIONS:
            for inner in dataclasses.fields(SECTIONS[field.name]):
                assert f"`{field.name}.{inner.name}`" in readme, f"{field.name}.{inner.name} missing from README"
        else:
            assert f"`{field.name}`" in readme, f"{field.name} missing from README"
