"""Errors a user can cause. The CLI prints them as one line and exits non-zero (no traceback)."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: names the file (when there is one) and the problem."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
