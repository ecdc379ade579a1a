"""Every JavaScript example in docs/sdk-js.md runs, as a Node program of its own, against a live server.

The programs are written under sdk/js/.examples/ (ignored by git), where `import "@pica/client"` resolves to the
package itself (its built dist/)."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path

import pytest

from tests.conftest import Node
from tests.sdkjs.conftest import node_args

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk-js.md"
EXAMPLES = re.findall(r"```js\n(.*?)```", DOC.read_text(), re.S)


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
async def test_example_runs(node: Node, sdk_built: Path, index: int) -> None:
    folder = sdk_built / ".examples"
    folder.mkdir(exist_ok=True)
    script = folder / f"example_{index}_{uuid.uuid4().hex[:8]}.mjs"
    script.write_text(EXAMPLES[index])
    try:
        proc = await asyncio.create_subprocess_exec(
            *node_args(), str(script), cwd=sdk_built, env={**os.environ, "PICA_URL": node.url},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        script.unlink()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.strip(), "an example should show what it did"
