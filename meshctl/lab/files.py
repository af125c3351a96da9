"""Reading YAML inputs named on the command line: files, folders (their *.yaml, *.yml and
*.json files, sorted) and ``-`` for standard input.

Raises :class:`ValueError` naming the path that cannot be read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path


def read_documents(paths: Iterable[str]) -> list[dict[str, str]]:
    docs = []
    for path in paths:
        if path == "-":
            docs.append({"text": sys.stdin.read(), "source": "<stdin>"})
            continue
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
        elif p.exists():
            files = [p]
        else:
            raise ValueError(f"the path {path!r} does not exist")
        for f in files:
            try:
                docs.append({"text": f.read_text(), "source": str(f)})
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read {f}: {exc}") from None
    return docs
