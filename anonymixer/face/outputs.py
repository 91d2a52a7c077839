"""Output paths of one run: never an input, never another output of the same run.

An input is recognised by its real path (symbolic links resolved) and by its file identity
(``st_dev``, ``st_ino``: the same file under another name, a hard link). Two inputs whose outputs
would land on the same path are an error for the second one (no renaming: a renamed output is
easily mistaken for another photo). An output from an earlier run is replaced, atomically (the
reports count those).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import OutputError


def _identity(path: str | Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


class OutputPlan:
    """Claims output paths under ``out_dir`` for inputs, refusing unsafe ones.

    ``inputs``: the paths of every file input of the run (live sources have none).
    """

    def __init__(self, out_dir: Path, inputs: Iterable[str | Path]) -> None:
        self.out_dir = out_dir
        self._inputs: dict[object, str] = {}
        for path in inputs:
            self._inputs.setdefault(os.path.realpath(path), str(path))
            identity = _identity(path)
            if identity is not None:
                self._inputs.setdefault(identity, str(path))
        self._claimed: dict[str, str] = {}

    def overwritten_input(self, target: Path) -> str | None:
        """The input that writing ``target`` would overwrite (same real path, or same file), or ``None``."""
        return self._inputs.get(os.path.realpath(target)) or self._inputs.get(_identity(target))

    def claim(self, relative: Path, owner: str) -> Path:
        """The output path for ``owner`` (an input's name), ``out_dir / relative``.

        Raises ``OutputError`` when it would overwrite an input (itself or another, by path or
        link) or the output of an earlier input of this run.
        """
        target = self.out_dir / relative
        real = os.path.realpath(target)
        if real in self._claimed:
            raise OutputError(f"{owner}: its output {target} would overwrite the output of "
                              f"{self._claimed[real]}; rename one of them")
        same = self.overwritten_input(target)
        if same is not None:
            which = "the input itself" if same == owner else f"the input {same}"
            raise OutputError(f"{owner}: its output {target} would overwrite {which} (the same file, or a link "
                              f"to it); choose another --out folder")
        self._claimed[real] = owner
        return target
