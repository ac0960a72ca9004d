"""The `atopos` command (typer). Entry point: `atopos.cli.main:main`.

Commands import the client SDK and the server lazily, inside their bodies, so that
`atopos --help` does not pay for httpx, cryptography or uvicorn.
"""
