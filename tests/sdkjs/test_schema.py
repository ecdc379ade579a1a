"""One protocol description: the committed JSON Schema and TypeScript frame types are what frames.py makes now.

A frame added to (or changed in) pica/protocol/frames.py without regenerating fails here, and so does a hand edit of
the schema or of sdk/js/src/frames.ts. Regenerate with `python -m pica.protocol.schema`."""

from __future__ import annotations

import json
from pathlib import Path

from pica.protocol import frames
from pica.protocol.schema import SCHEMA_PATH, TYPES_PATH, frame_schema, schema_text, types_text

ROOT = Path(__file__).resolve().parents[2]
FIX = "out of date: run `python -m pica.protocol.schema` and commit the result"


def test_the_committed_schema_is_the_one_frames_py_makes() -> None:
    assert (ROOT / SCHEMA_PATH).read_text() == schema_text(), f"{SCHEMA_PATH} {FIX}"


def test_the_typescript_frame_types_are_the_ones_the_schema_makes() -> None:
    committed = json.loads((ROOT / SCHEMA_PATH).read_text())
    assert (ROOT / TYPES_PATH).read_text() == types_text(committed), f"{TYPES_PATH} {FIX}"


def test_every_frame_type_of_either_direction_has_an_interface() -> None:
    schema = frame_schema()
    tags = {tag for side in ("client_frame", "server_frame") for tag in schema[side]["discriminator"]["mapping"]}
    assert tags == frames.CLIENT_FRAME_TYPES | frames.SERVER_FRAME_TYPES
    ts = types_text(schema)
    for name in schema["$defs"]:
        assert f"export interface {name} {{" in ts


def test_a_frame_missing_from_the_types_is_noticed() -> None:
    schema = frame_schema()
    del schema["$defs"]["Msg"]["properties"]["seq"]
    assert types_text(schema) != types_text(frame_schema())
