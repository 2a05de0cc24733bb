"""The console script: version, help listing every subcommand, bad input exits non-zero."""

from __future__ import annotations

import pytest

from synthaug import __version__
from synthaug.cli.main import SUBCOMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand_fails(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["paint-everything"])
    assert exit_info.value.code == 2
