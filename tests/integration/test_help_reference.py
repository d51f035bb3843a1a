"""README's command reference and ``--help`` agree: the same commands, arguments and options.

The reference's table of options is compared with what click says each command takes; on a
mismatch the test prints the table as it should read, to paste into README.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import click.testing

from cargohold.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_START = (
    "<!-- options table: kept equal to --help by tests/integration/test_help_reference.py -->"
)
TABLE_END = "<!-- end of options table -->"


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> dict[str, click.Command]:
    """Every command under *group* by its path (``image import``), aliases left out."""
    ctx = click.Context(group)
    found: dict[str, click.Command] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if command.hidden:
            continue
        if isinstance(command, click.Group):
            found.update(leaf_commands(command, (*prefix, name)))
        else:
            found[" ".join((*prefix, name))] = command
    return found


def usage_arguments(command: click.Command) -> str:
    return " ".join(
        p.make_metavar(click.Context(command))
        for p in command.params
        if isinstance(p, click.Argument)
    )


def option_names(command: click.Command) -> str:
    names = []
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        text = "/".join(param.opts)
        if param.secondary_opts:
            text += " / " + "/".join(param.secondary_opts)
        names.append(f"`{text}`")
    return ", ".join(names)


def expected_table() -> str:
    rows = ["| Command | Options |", "|---|---|"]
    for path, command in sorted(leaf_commands(cli).items()):
        arguments = usage_arguments(command).replace("|", "\\|")
        rows.append(f"| `{path}{' ' + arguments if arguments else ''}` | {option_names(command)} |")
    return "\n".join(rows)


def readme_table() -> str:
    text = README.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    return text[start:end].strip()


def test_readme_options_table_is_what_help_says() -> None:
    expected = expected_table()
    assert readme_table() == expected, f"README.md's options table should read:\n{expected}"


def test_every_command_has_a_section_in_the_reference() -> None:
    """A heading per command (``namespace ls | create NAME... | rm NAME...`` names three)."""
    headings = re.findall(r"^### (.+)$", README.read_text(), flags=re.MULTILINE)
    for path, command in leaf_commands(cli).items():
        group, _, verb = path.rpartition(" ")
        usage = f"{verb} {usage_arguments(command)}".strip()
        assert any(
            f"`{path} {usage_arguments(command)}".strip() in h
            or (group and f"`{group} " in h and usage in h)
            or f"`{path}`" in h
            for h in headings
        ), path


def test_help_of_every_command_shows_its_usage_arguments() -> None:
    runner_ctx = click.Context(cli)
    for path, command in leaf_commands(cli).items():
        usage = command.get_usage(click.Context(command, info_name=path, parent=runner_ctx))
        assert usage_arguments(command) in usage, path


def test_every_command_that_prints_takes_quiet_and_json() -> None:
    """``-q`` and ``--format json`` wherever a command prints a report (``content get`` prints
    a blob's bytes, ``completion`` a script, ``serve`` a request log, JSON with
    ``--log-format json``)."""
    raw_output = {"content get", "completion", "serve"}
    for path, command in leaf_commands(cli).items():
        if path in raw_output:
            continue
        opts = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
        assert {"-q", "--format"} <= opts, path


def help_text(*path: str) -> str:
    result = click.testing.CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_platform_help_says_each_commands_real_default() -> None:
    """push and check cover what the store holds; import, export, pull and sync this host's."""
    for store_default in ("image push", "image check"):
        text = help_text(*store_default.split())
        assert "Default: every platform the store holds." in text, store_default
    for host_default in ("image import", "image export", "image pull", "sync"):
        assert "Default: this host's platform." in help_text(*host_default.split()), host_default


def test_import_help_names_what_it_reads() -> None:
    text = help_text("image", "import")
    for word in ("docker save", "OCI layout directory", "gzip", "zstd", "FILE|DIR|-"):
        assert word in text, word
