"""Medplum's FHIR R4 validator (@medplum/core `validateResource`), an independent implementation,
run as one long-lived Node process (tests/node/validate.mjs) fed JSON lines."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


class MedplumValidator:
    def __init__(self) -> None:
        node = shutil.which("node")
        assert node, "Node 20 is required (make peers)"
        assert (NODE_DIR / "node_modules" / "@medplum" / "core").exists(), "run `make peers` (npm ci in tests/node)"
        self.process = subprocess.Popen([node, str(NODE_DIR / "validate.mjs")], cwd=NODE_DIR, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1)
        assert json.loads(self._line()) == {"ready": True}

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the Medplum validator process ended"
        return line

    def errors(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        """The error issues Medplum reports for one resource (empty when it is valid R4)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(resource) + "\n")
        self.process.stdin.flush()
        return json.loads(self._line())["errors"]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()
