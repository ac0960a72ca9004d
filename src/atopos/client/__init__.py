"""Client SDK used by the CLI (and later the TUI): links, HTTP API, create and reveal flows.

Submodules are imported on demand so `atopos --help` stays fast: `links`, `duration`,
`transport` (the one place connections are built), `api`, `envelope_reader`, `secrets`.
"""
