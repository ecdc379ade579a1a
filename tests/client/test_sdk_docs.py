"""Every Python example in docs/sdk.md runs, as a program of its own, against a live server."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import Node

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
async def test_example_runs(node: Node, index: int, tmp_path: Path) -> None:
    script = tmp_path / f"example_{index}.py"
    script.write_text(EXAMPLES[index])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env={**os.environ, "PICA_URL": node.url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.strip(), "an example should show what it did"
