"""Aligned text tables, as kubectl and istioctl print them: a header row in capitals, columns
padded to their widest cell and separated by three spaces, no trailing blanks."""

from __future__ import annotations

from collections.abc import Sequence


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The table as lines joined by newlines (no final newline); a table without rows is its header."""
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in table)
