"""What `reactive` says about itself: a description for every command, help for every
option, `--version`, and a `-v` help that matches the levels it sets. In-process."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactive_core import Host
from reactive_core._cli.main import build_parser, log_level, run


def _plugin_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The commands every installed entry-point plugin adds (the health plugin: `status`)."""
    for name in ("REACTIVE_PLUGINS", "REACTIVE_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    host = Host(database_url=f"sqlite:///{tmp_path}/reactive.db", entry_points=True,
                config={"workers": False})
    host.load_plugins()
    return [c for cs in host.hook.reactive_cli_commands() for c in cs]


def _parsers(parser: argparse.ArgumentParser,
             path: str = "reactive") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """`parser` and every (sub-)command parser under it, with its command line."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_command_has_a_description_and_every_option_has_help(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = build_parser(_plugin_commands(tmp_path, monkeypatch))  # type: ignore[arg-type]
    parsers = dict(_parsers(parser))
    assert {"reactive serve", "reactive db upgrade", "reactive db current",
            "reactive status"} <= set(parsers)

    undescribed = [path for path, p in parsers.items() if not (p.description or "").strip()]
    assert not undescribed, f"commands without a description: {undescribed}"
    unhelped = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, p in parsers.items() for a in p._actions
        if not isinstance(a, argparse._HelpAction)
        and (not (a.help or "").strip() or a.help == argparse.SUPPRESS)
    ]
    assert not unhelped, f"options without help: {unhelped}"


def _exit_status(argv: list[str]) -> int | str | None:
    """The status `run` returns for argparse's own exits (`--help`, `--version`)."""
    return run(argv)


def test_help_lists_the_exit_statuses_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_status(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 success; 1 problems found" in out
    assert "3 serve had to cut off work still running when it stopped" in out


def test_version_prints_the_installed_package_version_without_loading_plugins(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A broken plugin would stop every command; --version is answered before loading any.
    monkeypatch.setenv("REACTIVE_PLUGINS", "catalog")
    assert _exit_status(["--version", "--plugin", "no_such_module:Plugin"]) == 0
    assert capsys.readouterr().out == f"reactive {importlib.metadata.version('reactive-core')}\n"


@pytest.mark.parametrize(("command", "verbose", "level"), [
    ("changes", 0, logging.WARNING), ("changes", 1, logging.INFO),
    ("changes", 2, logging.DEBUG), ("changes", 3, logging.DEBUG),
    ("serve", 0, logging.INFO), ("serve", 1, logging.DEBUG),
])
def test_verbose_help_says_what_each_v_logs(command: str, verbose: int, level: int) -> None:
    assert log_level(command, verbose) == level
    (action,) = [a for a in build_parser()._actions if "-v" in a.option_strings]
    text = " ".join((action.help or "").split())
    said = {("changes", 0): "commands log warnings", ("changes", 1): "-v adds info",
            ("changes", 2): "-vv debug", ("changes", 3): "-vv debug",
            ("serve", 0): "serve logs info", ("serve", 1): "there -v already gives debug"}
    assert said[command, verbose] in text, text
