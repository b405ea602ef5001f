"""The ``sparseshift`` command line.

Each subcommand lives in its own module under :mod:`sparseshift.experiments.commands` (``bench`` in
:mod:`sparseshift.experiments.bench.command`) and exposes
``add_parser(subparsers)`` (which sets ``func``) and ``run(args) -> int``; :func:`command_modules`
imports them when the parser is built. Modules import heavy dependencies (MuJoCo, torch) inside
``run`` so ``sparseshift --help`` stays fast.

Bad input never produces a traceback: a :class:`~sparseshift.envs.infra.errors.ConfigError` (or a
missing file, or a usage error) prints one line ``sparseshift <cmd>: error: ...`` and exits with
status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import NoReturn

#: The subcommands :func:`build_parser` adds, in the order ``--help`` lists them (module names
#: under :mod:`sparseshift.experiments.commands`; ``bench`` is
#: :mod:`sparseshift.experiments.bench.command`, next to the benchmarks it lists).
COMMANDS: tuple[str, ...] = (
    "demo", "envs", "shifts", "render", "collect", "inspect", "export", "train_rep", "eval_rep",
    "export_rep", "export_encoder", "train_agent", "evaluate", "scorecard", "study",
    "disentangle", "slot_curve", "bench", "doctor", "fidelity",
)


def command_modules() -> Mapping[str, ModuleType]:
    """The subcommand modules by name, imported plainly when the parser is built."""
    from sparseshift.experiments import commands
    from sparseshift.experiments.bench import command as bench
    from sparseshift.experiments.commands import (  # noqa: F401  (imported to be listed)
        collect,
        demo,
        disentangle,
        doctor,
        envs,
        eval_rep,
        evaluate,
        export,
        export_encoder,
        export_rep,
        fidelity,
        inspect,
        render,
        scorecard,
        shifts,
        slot_curve,
        study,
        train_agent,
        train_rep,
    )

    found = {**vars(commands), "bench": bench}
    return MappingProxyType({name: found[name] for name in COMMANDS})


EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="sparseshift",
        description=(
            "Learn visual representations from weakly supervised video (sparse mechanism shifts) "
            "and test whether agents that use them survive colour shifts."
        ),
        epilog="Run 'sparseshift COMMAND --help' for the options of each command.",
    )
    sub = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    modules = command_modules()
    for name in COMMANDS:
        modules[name].add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sparseshift`` console script."""
    from sparseshift.envs.core.gl import RenderBackendError
    from sparseshift.envs.infra.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    prog = f"sparseshift {args.command}"
    try:
        return int(args.func(args) or 0)
    except (ConfigError, RenderBackendError) as exc:
        # One line whatever a library put into the message.
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:
        name = exc.filename if exc.filename is not None else exc
        print(f"{prog}: error: file not found: {name}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a full disk is the user's condition, anything else a bug
        from sparseshift.envs.infra.io import disk_full, disk_full_message

        if not disk_full(exc):
            raise
        print(f"{prog}: error: {disk_full_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
