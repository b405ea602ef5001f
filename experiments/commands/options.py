"""Command-line flags derived from config dataclasses, so a default lives in one place.

:func:`add_config_flags` adds one flag per field of a :class:`~sparseshift.envs.infra.config.Config`
(name, type, help and the default shown in ``--help`` come from the field); flags that are not
given stay absent from the parsed namespace (``argparse.SUPPRESS``). :func:`build_config` then
layers, lowest first: the config's defaults, a ``--config FILE`` (JSON or TOML), and the flags the
user gave. The result is validated by the config class itself.

Why a small generator of our own rather than tyro (measured; docs/representations.md, "How the
flags are made"): the flag generator is the ~90 lines below plus the text parser of
:mod:`sparseshift.envs.infra.config` (``parse_text`` and the ``KEY=VALUE`` parsers, ~110 lines),
which
``--model KEY=VALUE`` (typed by the learner), ``--hp`` and ``--env-kwarg`` need with or without
tyro. tyro would replace only the ~90 lines, with glue of about the same size, and would change
the CLI: ``--progress/--no-progress`` pairs instead of ``--quiet``, nested configs flattened
(``--lr-schedule.warmup-steps``) unless each text form gets a custom constructor, help from
``Annotated`` markers rather than the :func:`~sparseshift.envs.infra.config.opt` metadata, and its
multi-line error panels instead of our one-line ``ConfigError`` with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sparseshift.envs.infra.config import (
    Config,
    field_types,
    literal_choices,
    parse_text,
    read_config_file,
)
from sparseshift.envs.infra.errors import ConfigError

C = TypeVar("C", bound=Config)

CONFIG_FLAG_HELP = ("a JSON or TOML file of options (the same names as the flags, with "
                    "underscores); flags given on the command line override it")


def flag_name(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("flag") or "--" + f.name.replace("_", "-"))


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value) or "none"
    return f"default {'none' if value is None else value}"


def _metavar(f: dataclasses.Field[Any], tp: Any) -> str | None:
    if f.metadata.get("metavar"):
        return str(f.metadata["metavar"])
    literals = [a for a in typing.get_args(tp) if typing.get_origin(a) is typing.Literal]
    if typing.get_origin(tp) is typing.Literal:
        literals = [tp]
    if literals:
        return "{" + ",".join(str(c) for lit in literals for c in typing.get_args(lit)) + "}"
    return None


def _text_form(tp: Any) -> bool:
    """Whether the config checks this field's text itself: choices (``Literal``) and configs
    with a text form (e.g. an LRSchedule's ``W:D:R``) give their own one-line errors."""
    members = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return literal_choices(tp) is not None or (
        len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], Config)
        and hasattr(members[0], "parse"))


def _converter(tp: Any, flag: str) -> Any:
    passthrough = _text_form(tp)

    def convert(text: str) -> Any:
        if passthrough:
            none = type(None) in typing.get_args(tp) and text.strip().lower() in ("none", "null")
            return None if none else text
        try:
            return parse_text(tp, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{flag} expects {exc}, got {text!r}") from None

    convert.__name__ = flag  # argparse names the type in some messages
    return convert


def add_config_flags(parser: argparse.ArgumentParser, cls: type[Config], *,
                     skip: Collection[str] = (), help_overrides: Mapping[str, str] | None = None
                     ) -> dict[str, argparse.Action]:
    """One flag per command-line field of ``cls`` (see :func:`sparseshift.envs.infra.config.opt`);
    returns the flags' actions by field name."""
    types = field_types(cls)
    actions: dict[str, argparse.Action] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        flag = flag_name(f)
        text = (help_overrides or {}).get(f.name) or str(f.metadata.get("help", ""))
        tp = types[f.name]
        if tp is bool:
            invert = bool(f.metadata.get("invert"))
            actions[f.name] = parser.add_argument(
                flag, dest=f.name, action="store_false" if invert else "store_true",
                default=argparse.SUPPRESS, help=text)
            continue
        actions[f.name] = parser.add_argument(
            flag, dest=f.name, type=_converter(tp, flag), default=argparse.SUPPRESS,
            metavar=_metavar(f, tp),
            help=f"{text} ({_default_text(f)})" if text else _default_text(f))
    return actions


def add_config_file_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                        help=CONFIG_FLAG_HELP)


def given(args: argparse.Namespace, cls: type[Config]) -> dict[str, Any]:
    """The config fields the user set on the command line (flags derived from the fields)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.metadata.get("cli", True) and hasattr(args, f.name)}


def build_config(cls: type[C], args: argparse.Namespace, extra: Mapping[str, Any] | None = None,
                 file_values: Mapping[str, Any] | None = None) -> C:
    """``cls`` from defaults < ``--config FILE`` < flags given < ``extra`` (values the command
    computed, e.g. parsed ``KEY=VALUE`` options). Missing required fields name their flag."""
    values: dict[str, Any] = dict(file_values or {})
    path = getattr(args, "config_file", None)
    if path is not None and file_values is None:
        values = read_config_file(Path(path), cls)
    values.update(given(args, cls))
    values.update(extra or {})
    missing = [f for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.name not in values]
    if missing:
        flags = ", ".join(flag_name(f) for f in missing)
        raise ConfigError(f"missing {flags} (give it as a flag or in --config FILE)")
    return cls.from_json(values)


PLUGIN_HELP = ("allow code from MODULE (repeatable): a learner or encoder factory that a run, "
               "agent or encoder folder names is imported only when you name its module here or "
               "it is an installed entry point; sparseshift never imports a module because a "
               "file names it")


def add_plugin_flag(parser: argparse.ArgumentParser) -> None:
    """``--plugin MODULE`` (repeatable): the modules the user trusts (see :func:`plugins_of`)."""
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help=PLUGIN_HELP)


def plugins_of(args: argparse.Namespace) -> Any:
    """The :class:`~sparseshift.representations.external.Plugins` of ``--plugin`` flags."""
    from sparseshift.representations.plugins import Plugins

    names = list(getattr(args, "plugin", []) or [])
    for n in names:
        if not all(p.isidentifier() for p in n.split(".")):
            raise ConfigError(f"--plugin {n!r} is not a module name (package.module)")
    return Plugins.of(*names)
