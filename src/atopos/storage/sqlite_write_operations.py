"""The write operations of the SQLite store, as data: module-level functions `op(conn, *args)`
with plain picklable arguments, each registered once under its name.

The thread writer of one process runs `op(conn, *args)` directly; a worker of `atopos serve
--workers N` sends `(name, args)` to the node's writer process (storage/sqlite_writer_process.py),
which runs only functions found here by name: an unknown name is refused, never looked up as
an attribute. An operation that burned ciphertext returns `Burned(result)`
(storage/sqlite_batches.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["name_of_registered", "operation_named", "with_args", "write_operation"]

F = TypeVar("F", bound=Callable[..., Any])
_OPERATIONS: dict[str, Callable[..., Any]] = {}


def write_operation(function: F) -> F:
    """Register `function` under its name (a decorator); a second one of that name is a bug."""
    name = function.__name__
    if name in _OPERATIONS and _OPERATIONS[name] is not function:
        raise ValueError(f"a write operation named {name!r} is already registered")
    _OPERATIONS[name] = function
    return function


def operation_named(name: str) -> Callable[..., Any] | None:
    """The registered operation of that name; None when there is none."""
    return _OPERATIONS.get(name)


def name_of_registered(operation: Callable[..., Any]) -> str:
    """The name `operation` is registered under; RuntimeError when it is not registered (a
    missing `@write_operation`), refused alike by both writers so that one process's tests
    catch what only the writer process would otherwise refuse."""
    name = getattr(operation, "__name__", "")
    if operation_named(name) is not operation:
        raise RuntimeError(f"{name or operation!r} is not a registered write operation")
    return str(name)


def with_args(
    operation: Callable[..., Any], args: tuple[object, ...]
) -> Callable[[sqlite3.Connection], Any]:
    """`operation` as a function of the connection alone, as the batch runs it."""
    return lambda conn: operation(conn, *args)
