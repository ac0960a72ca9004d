"""`atopos pin URL`: print the key pin of a running server, for its operator to hand out."""

from __future__ import annotations

from typing import Annotated

import typer

from atopos.cli.context import global_options
from atopos.errors import InvalidInput

__all__ = ["pin"]


def pin(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(metavar="URL", help="The server, https://host[:port].")],
) -> None:
    """Print the server's key pin (sha256/<base64>) for clients' --pin-spki.

    The certificate is verified as every other connection is (the system's CAs, or
    --ca-file): a pin taken from an unverified connection could be an attacker's.
    """
    # Imported here: cryptography is slow to load and only this command needs it now.
    from atopos.client.links import parse_server_url
    from atopos.client.pinning import describe_certificate, fetch_server_certificate
    from atopos.client.transport import TlsPolicy

    if global_options(ctx).proxy is not None:
        # It opens its own TLS connection, which does not go through a proxy.
        raise InvalidInput(
            "atopos pin connects directly, not through Tor; take the pin where the server runs."
        )
    server = parse_server_url(url)
    context = TlsPolicy(ca_file=global_options(ctx).ca_file).ssl_context()
    info = describe_certificate(fetch_server_certificate(server, context))
    typer.echo(info.pin)
    typer.echo(f"Subject: {info.subject}", err=True)
    if info.names:
        typer.echo(f"Names: {', '.join(info.names)}", err=True)
    typer.echo(f"Issuer: {info.issuer}", err=True)
    expires = info.not_after.strftime("%Y-%m-%d %H:%M UTC")
    typer.echo(f"Certificate expires: {expires}", err=True)
    typer.echo(
        "The pin names the server's public key: it outlives a renewed certificate only if "
        "the renewal keeps the key (docs/operations.md, Pinning).",
        err=True,
    )
