"""The list of files a command wrote, printed as its last lines (every command that writes files
ends with it, so a user sees exactly what to open next)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO


def human_size(n: int) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as ``ls -h --si``)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover (the loop returns)


def _folder_summary(path: Path) -> str:
    files = [p for p in path.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    plural = "s" if len(files) != 1 else ""
    return f"{path}{os.sep} ({len(files)} file{plural}, {human_size(total)})"


def format_written(paths: Iterable[str | os.PathLike[str]], header: str = "wrote") -> str:
    """``header:`` then one indented line per existing path: a file with its size, a folder with
    its file count and total size. Paths that do not exist are left out; none at all gives
    ``""``."""
    lines = []
    seen: set[Path] = set()
    for p in paths:
        path = Path(p)
        if path in seen or not path.exists():
            continue
        seen.add(path)
        if path.is_dir():
            lines.append(f"  {_folder_summary(path)}")
        else:
            lines.append(f"  {path} ({human_size(path.stat().st_size)})")
    return f"{header}:\n" + "\n".join(lines) if lines else ""


def print_written(paths: Iterable[str | os.PathLike[str]], header: str = "wrote",
                  file: TextIO | None = None) -> None:
    """Print :func:`format_written` (to stdout by default) when anything was written."""
    text = format_written(paths, header)
    if text:
        print(text, file=file or sys.stdout)
