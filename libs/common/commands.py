"""Changes people make over a service's HTTP API, kept in its own stream.

A command runs like a handler: in one transaction with the service's state. With its effect, the
runtime writes a `CommandRecorded` event to the outbox — the command's name and its arguments as
JSON — and marks that event as already handled in the inbox. The live service then skips it when
it comes back through its mailbox; a rebuild from history, starting from an empty inbox, runs the
command again at its place among the other messages, with the same time and the same derived
event ids. Stream history is then the whole truth, HTTP included.

A command is a function fn(ctx, *arguments) registered by name in the service's definition; its
configuration (a policy file, say) is a keyword-only parameter bound with functools.partial. Its
arguments are anything msgspec encodes (Structs, dataclasses, strings, numbers) and are decoded
back by the function's own annotations. It reads time from ctx.envelope.time, never the clock,
so a replay decides the same.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from sinew.contracts.ops import CommandRecorded

from .context import Context, Outgoing

Command = Callable[..., Any]


def encode_arguments(arguments: tuple[Any, ...]) -> list[Any]:
    return msgspec.to_builtins(list(arguments))


def decode_arguments(fn: Command, values: list[Any]) -> list[Any]:
    underlying = fn
    while isinstance(underlying, functools.partial):
        underlying = underlying.func
    hints = typing.get_type_hints(underlying)
    parameters = [
        p
        for p in list(inspect.signature(fn).parameters.values())[1:]
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(values) != len(parameters):
        raise ValueError(f"{len(values)} arguments recorded, the command takes {len(parameters)}")
    return [
        msgspec.convert(value, hints.get(parameter.name, Any), strict=False)
        for parameter, value in zip(parameters, values, strict=True)
    ]


def keep_record(ctx: Context, recorded: CommandRecorded) -> None:
    """The command's own record goes out beside the events it emitted (and a rebuild keeps it in
    the outbox as published, like those)."""
    channel = ctx.publications.channel_for(recorded, None)
    ctx.outgoing.append(
        Outgoing(
            recorded.command_id,
            channel.subject(ctx.site),
            ctx.envelope.headers(),
            msgspec.json.encode(recorded),
        )
    )


def replay_handler(commands: dict[str, Command]) -> Callable[[CommandRecorded, Context], None]:
    """The handler of a service's own CommandRecorded events. Live it never runs (the inbox
    already holds each record); in a rebuild it runs the command again."""

    def replay(recorded: CommandRecorded, ctx: Context) -> None:
        fn = commands.get(recorded.command)
        if fn is None:
            raise LookupError(f"this version has no command {recorded.command!r}")
        fn(ctx, *decode_arguments(fn, recorded.arguments))
        keep_record(ctx, recorded)

    return replay
