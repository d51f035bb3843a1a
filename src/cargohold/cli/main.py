"""The ``cargohold`` command line: the root group, its global options, and the entry point
that turns every error into one line and an exit status.

Every failure cargohold can explain becomes one line on stderr (``cargohold: error: …``) and
exit status 1; usage errors exit 2; Ctrl-C exits 130; tracebacks appear only with
``--debug``. The command groups live in their own modules (:mod:`.image`, :mod:`.content`,
:mod:`.namespace`, :mod:`.archive`, :mod:`.completion`), each imported only when it is used.
"""

from __future__ import annotations

import gc
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from click.shell_completion import CompletionItem

from ..defaults import DEFAULT_NAMESPACE
from ..errors import CargoholdError
from ..version import __version__
from .context import Context, pass_context
from .groups import AliasedGroup, LazyCommands
from .render import echo
from .units import counted

# httpx imports its own command line (``httpx._main``: rich, pygments) whenever click and rich
# are installed, as they are with cargohold: about 50 ms of CPU in every registry
# command, for a ``main`` cargohold never calls. Marked absent, httpx defines a stub instead.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

#: The root's commands, each imported from its module when first looked up.
COMMANDS = {
    "archive": ".archive:archive",
    "completion": ".completion:completion",
    "content": ".content:content",
    "image": ".image:image",
    "images": ".image:images",
    "info": ".info:info",
    "login": ".login:login",
    "logout": ".login:logout",
    "namespace": ".namespace:namespace",
    "sync": ".sync:sync",
    "serve": ".serve:serve",
}

#: Other names of the root's commands.
ALIASES = {"i": "image", "namespaces": "namespace", "ns": "namespace"}


class RootGroup(AliasedGroup):
    """The top-level group: a Ctrl-C in any command ends it with status 130, as a shell's."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """``images`` lists images (docker's and podman's word), but ``images CMD``, where CMD
        is a command of the image group, stays ``image CMD`` as it always was."""
        if len(args) > 1 and args[0] == "images":
            group = self.get_command(ctx, "image")
            if isinstance(group, AliasedGroup) and (
                args[1] in group.commands or args[1] in group.aliases
            ):
                args = ["image", *args[1:]]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Here, not in click: click would print a blank line and exit 1.
            _exit_interrupted()


def _complete_namespaces(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    # Here, not at the top: the completion module opens stores, which --version never needs.
    from .completion import complete_namespaces

    return complete_namespaces(ctx, param, incomplete)


@click.group(
    cls=RootGroup,
    commands=LazyCommands(__package__ or "cargohold.cli", COMMANDS),
    aliases=ALIASES,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--root",
    envvar="CARGOHOLD_ROOT",
    metavar="DIR",
    type=click.Path(file_okay=False),  # completes directories
    help="Store root. Default: $CARGOHOLD_ROOT, /var/lib/cargohold as root, else the user"
    " data directory.",
)
@click.option(
    "-n",
    "--namespace",
    envvar="CARGOHOLD_NAMESPACE",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    shell_complete=_complete_namespaces,
    help="Namespace of image names (env CARGOHOLD_NAMESPACE).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(__version__, prog_name="cargohold")
@click.pass_context
def cli(ctx: click.Context, root: str | None, namespace: str, debug: bool) -> None:
    """A local content-addressable store of OCI images, moved in and out as tarballs."""
    ctx.obj = Context(root, namespace, debug)


@cli.result_callback()
@pass_context
def after_command(ctx: Context, /, result: object, **params: object) -> None:
    """A command that listed what it could but left out unreadable rows of the store's
    metadata (warned about already) exits 1, so that a script notices."""
    if ctx.unreadable:
        records = counted(len(ctx.unreadable), "unreadable record")
        raise CargoholdError(f"{records} of the store's metadata left out")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI, turning errors into one line and an exit status."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        _run(argv, debug)
    finally:
        if argv is None:
            # The process ends here, every file and connection closed: what is left is
            # garbage. Frozen, the interpreter's final collection skips it (a tenth of the
            # time of a command that does little, such as a push the registry has in full).
            gc.freeze()


def _run(argv: Sequence[str] | None, debug: bool) -> None:
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="cargohold",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        _fail("aborted")
    except KeyboardInterrupt:
        _exit_interrupted()
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:
        if debug:
            _print_traceback()
        _fail(_error_line(exc))


def _error_line(exc: Exception) -> str:
    """The one line that explains *exc* (after ``cargohold: error:``)."""
    if isinstance(exc, CargoholdError):
        return str(exc)
    if isinstance(exc, sqlite3.Error):  # storage types its own (StoreLockedError…); not this
        return f"store metadata (metadata.db): {exc}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)"


def _exit_interrupted() -> NoReturn:
    """Ctrl-C: one line and status 130, as a shell reports a command SIGINT ended."""
    echo("cargohold: interrupted", err=True)
    sys.exit(130)


def _print_traceback() -> None:
    import traceback  # only for --debug

    traceback.print_exc()


def _fail(message: str) -> NoReturn:
    echo(f"cargohold: error: {message}", err=True)
    sys.exit(1)
