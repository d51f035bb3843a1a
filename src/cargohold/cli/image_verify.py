"""``cargohold image verify``: cosign signatures of stored images, checked offline."""

from __future__ import annotations

import click

from ..errors import SignatureError
from ..operations.verifying import unsigned
from .completion import complete_images
from .context import Context, pass_context
from .jsonout import verified_json
from .options import format_option, quiet_option
from .render import echo, print_json


@click.command("verify")
@click.argument("refs", metavar="REF...", nargs=-1, required=True, shell_complete=complete_images)
@click.option(
    "--key",
    "key",
    required=True,
    metavar="KEY.pub",
    help="The PEM public key (ECDSA, RSA or Ed25519) the signature must verify with.",
)
@click.option(
    "--identity",
    metavar="REF",
    help="Also require the signed payload to name this repository (docker-reference).",
)
@format_option
@quiet_option
@pass_context
def verify(
    ctx: Context,
    refs: tuple[str, ...],
    key: str,
    identity: str | None,
    output_format: str,
    quiet: bool,
) -> None:
    """Check that each image REF carries a cosign (sigstore simple-signing) signature by KEY
    over a payload naming the image's digest, with no network (no transparency log).

    Exits 1, naming the first image without one and why its signatures did not count."""
    with ctx.store("read") as store:
        results = store.verify(refs, key, identity)
    if output_format == "json":
        print_json([verified_json(r) for r in results])
    elif not quiet:
        for result in results:
            if result.ok:
                echo(f"{result.name}: {result.digest}: verified ({len(result.valid)} valid)")
    for result in results:
        if not result.ok:
            raise SignatureError(f"{result.name}: {unsigned(result, key)}")
