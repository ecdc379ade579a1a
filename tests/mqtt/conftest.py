"""A node with its MQTT gateway on a free port, in this process."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pica.config import MqttConfig
from tests.conftest import Node, make_config, running


@pytest.fixture
async def mqtt_node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running(dataclasses.replace(make_config(tmp_path), mqtt=MqttConfig(port=0))) as node:
        yield node
