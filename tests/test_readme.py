"""README.md is true: every command it shows exists with the flags it shows, the cheap ones run,
and its Python and TOML blocks work.

* Every ``sparseshift ...`` line of a ```` ```sh ```` / ```` ```bash ```` block is parsed by the
  CLI's own parser (:func:`sparseshift.experiments.cli.build_parser`); every ``--flag`` in any
  README command (shell blocks, ```` ```text ```` synopses, inline code) must be an option of that
  command, spelled in full (argparse would accept an abbreviation).
* The README names every subcommand the CLI has, and no other.
* The cheap commands (``envs``, ``render``, ``collect``, ``inspect``) run for real, in README
  order, in one temporary folder, with their sizes cut down (:data:`SMALL`: ``render --n 2``,
  ``collect --n 24 --workers 1``). That folder is the fixture of the Python blocks: the README's
  own ``collect`` lines make the ``grid-pairs.h5`` and ``push.h5`` its snippets read.
* Every ```` ```python ```` block is executed in that folder; every ```` ```toml ```` block loads
  as a ``StudyConfig`` (the README's custom study).
* The set-up block is exactly ``make demo`` and ``make test``, and every ``make`` target named
  exists in the Makefile.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparseshift.experiments.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")

#: Commands run for real, in README order.
RUN = ("envs", "render", "collect", "inspect")
#: Size flags of the commands that run, set (or added) to these values.
SMALL: dict[str, dict[str, str]] = {
    "render": {"--n": "2"},
    "collect": {"--n": "24", "--workers": "1"},
}


def blocks(lang: str | tuple[str, ...]) -> list[tuple[int, str]]:
    """(line number, body) of each fenced block whose language is ``lang``."""
    langs = (lang,) if isinstance(lang, str) else lang
    return [(TEXT.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(TEXT)
            if m.group(1) in langs]


def shell_lines() -> list[tuple[str, list[str]]]:
    """(where, tokens) of every command line of the sh/bash blocks, comments removed."""
    out = []
    for start, body in blocks(("sh", "bash")):
        for i, line in enumerate(body.splitlines()):
            tokens = shlex.split(line, comments=True)
            if tokens:
                out.append((f"README.md:{start + 1 + i}", tokens))
    return out


def mentions() -> list[tuple[str, str]]:
    """(where, text) of every ``sparseshift <command> ...`` in code: lines of every fenced block,
    inline code spans outside them."""
    out = []
    for start, body in blocks(("sh", "bash", "text", "")):
        for i, line in enumerate(body.splitlines()):
            if line.startswith("sparseshift "):
                out.append((f"README.md:{start + 1 + i}", line.split(" #", 1)[0]))
    prose = FENCE.sub("", TEXT)
    for m in re.finditer(r"`([^`]+)`", prose):
        span = " ".join(m.group(1).split())
        if span.startswith("sparseshift "):
            out.append((f"inline `{span}`", span))
    return out


def command_parser(words: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that handles ``sparseshift WORDS...``: follows subcommand names."""
    parser: argparse.ArgumentParser = build_parser()
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
    return parser


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def small(tokens: list[str]) -> list[str]:
    """``tokens`` (without ``sparseshift``) with the size flags of :data:`SMALL` applied."""
    args = list(tokens)
    for flag, value in SMALL.get(args[0], {}).items():
        if flag in args:
            args[args.index(flag) + 1] = value
        elif flag == "--n":
            args += [flag, value]
    return args


SHELL = shell_lines()
SPARSESHIFT = [(where, t[1:]) for where, t in SHELL if t[0] == "sparseshift"]
MENTIONS = mentions()


def test_readme_has_runnable_blocks() -> None:
    assert len(SPARSESHIFT) >= 10 and blocks("python") and blocks("toml")


@pytest.mark.parametrize(("where", "tokens"), SHELL, ids=[w for w, _ in SHELL])
def test_shell_lines_are_sparseshift_or_make(where: str, tokens: list[str]) -> None:
    assert tokens[0] in ("sparseshift", "make"), f"{where}: unknown command {tokens[0]!r}"


def test_setup_is_make_demo_and_make_test() -> None:
    setup = TEXT.split("## Set up", 1)[1]
    first = FENCE.search(setup)
    assert first is not None and first.group(1) == "sh"
    lines = [shlex.split(x, comments=True) for x in first.group(2).splitlines()]
    assert [x for x in lines if x] == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for _, tokens in SHELL:
        if tokens[0] == "make":
            for target in tokens[1:]:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target


def test_readme_names_every_command_and_no_other() -> None:
    named = {text.split()[1] for _, text in MENTIONS}
    named = {w for w in named if w.islower()}  # COMMAND, ENV_ID: placeholders
    real = {c.replace("_", "-") for c in COMMANDS}
    assert real - named == set(), "subcommands the README does not show"
    assert named - real == set(), "commands in the README that do not exist"


def test_env_table_lists_every_registered_env() -> None:
    import gymnasium as gym

    import sparseshift  # noqa: F401  (registers the ids)

    table = set(re.findall(r"^\| `(sparseshift/[^`]+)` \|", TEXT, re.M))
    assert table == {k for k in gym.registry if k.startswith("sparseshift/")}


def test_dataset_format_version_is_current() -> None:
    from sparseshift.envs.data.layout import FORMAT_VERSION

    assert re.findall(r"format version (\d+)", TEXT) == [str(FORMAT_VERSION)]


@pytest.mark.parametrize(("where", "text"), MENTIONS, ids=[w for w, _ in MENTIONS])
def test_readme_flags_exist(where: str, text: str) -> None:
    words = text.split()[1:]
    known = options(command_parser(words))
    unknown = sorted(set(FLAG.findall(text)) - known)
    assert not unknown, f"{where}: {' '.join(words[:1])} has no option {', '.join(unknown)}"


@pytest.mark.parametrize(("where", "args"), SPARSESHIFT, ids=[w for w, _ in SPARSESHIFT])
def test_shell_commands_parse(
    where: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        ns = build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: sparseshift {' '.join(args)}: {capsys.readouterr().err.strip()}")
    assert getattr(ns, "func", None) is not None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder in which the README's cheap commands ran, in README order, at small sizes."""
    path = tmp_path_factory.mktemp("readme")
    ran = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path)
        for where, args in SPARSESHIFT:
            if args[0] in RUN:
                argv = small(args)
                assert main(argv) == 0, f"{where}: sparseshift {' '.join(argv)} failed"
                ran.append(args[0])
    assert set(ran) == set(RUN), f"the README should show {RUN}; ran {ran}"
    yield path


def test_cheap_commands_run(workdir: Path) -> None:
    import h5py

    from sparseshift.envs.data.layout import FORMAT_VERSION

    for name in ("pairs.png", "reach.png"):
        assert (workdir / name).stat().st_size > 0, name
    for name in ("grid-pairs.h5", "push.h5"):
        with h5py.File(workdir / name, "r") as f:
            assert int(f.attrs["format_version"]) == FORMAT_VERSION


@pytest.mark.parametrize(("line", "code"), blocks("python"),
                         ids=[f"README.md:{n}" for n, _ in blocks("python")])
def test_python_blocks_run(line: int, code: str, workdir: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize(("line", "body"), blocks("toml"),
                         ids=[f"README.md:{n}" for n, _ in blocks("toml")])
def test_toml_blocks_load(line: int, body: str, tmp_path: Path) -> None:
    from sparseshift.experiments.study.presets import StudyConfig

    path = tmp_path / "my_study.toml"
    path.write_text(body, encoding="utf-8")
    cfg = StudyConfig.load(path)
    assert cfg.envs, f"README.md:{line}"
