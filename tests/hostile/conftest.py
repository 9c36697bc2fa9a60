"""Helpers for the hostile-input suite: run the CLI in process and read its one-line errors."""

from __future__ import annotations

import dataclasses

import pytest


@dataclasses.dataclass
class CliResult:
    """Exit code and captured output of one ``microseg`` call."""

    rc: int
    out: str
    err: str

    def error_line(self) -> str:
        """The single non-empty stderr line, asserting there is exactly one and no traceback."""
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        assert "Traceback" not in self.err, self.err
        # warnings may come before the error; the error is the last line and the only one
        # that starts with "microseg ... error:"
        errors = [ln for ln in lines if ": error:" in ln]
        assert len(errors) == 1, self.err
        return errors[0]


@pytest.fixture
def cli(capsys):
    """Call ``microseg ARGS...`` in process; return a :class:`CliResult` (never raises SystemExit)."""
    from napari_microseg.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse errors
            rc = e.code if isinstance(e.code, int) else 2
        cap = capsys.readouterr()
        return CliResult(int(rc), cap.out, cap.err)

    return run
