"""`csfs man` (the manual page, generated from the parser) and `csfs completion` (shell scripts)."""
from __future__ import annotations

import argparse
import datetime
import re
from collections.abc import Iterator

from . import cli

SHELLS = ("bash", "zsh")


def register(sub: cli.Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("man", parents=[common], help="print the manual page (roff), generated from --help",
                       description="Print csfs(1) in roff: every command with its options, the exit status, "
                                   "environment and files. Read it with `csfs man | man -l -`, or install it: "
                                   "csfs man > /usr/local/share/man/man1/csfs.1")
    p.set_defaults(func=_cmd_man)
    p = sub.add_parser("completion", parents=[common], help="print the shell completion script (bash or zsh)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Print a script that makes the shell complete csfs commands, options and "
                                   "paths (argcomplete).\n\n"
                                   "  bash: eval \"$(csfs completion bash)\"   (or add it to ~/.bashrc)\n"
                                   "  zsh:  eval \"$(csfs completion zsh)\"    (in ~/.zshrc, after compinit)")
    p.add_argument("shell", choices=SHELLS, help="the shell")
    p.set_defaults(func=_cmd_completion)


def _cmd_completion(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["csfs"], shell=args.shell), end="")
    return 0


def _cmd_man(args: argparse.Namespace) -> int:
    print(manpage(args.parser), end="")
    return 0


# -- the man page -------------------------------------------------------------------------

def _esc(text: str) -> str:
    """Text safe in roff: backslashes escaped, hyphens literal, no line starting with . or '."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    return "\n".join(("\\&" + ln if ln.startswith((".", "'")) else ln) for ln in text.split("\n"))


def _para(text: str) -> str:
    """A description: blank lines separate paragraphs, indented lines stay as they are."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.split("\n")
        if any(ln.startswith("  ") for ln in lines):
            out.append(".PP\n.nf\n" + _esc(block) + "\n.fi")
        else:
            out.append(".PP\n" + _esc(" ".join(ln.strip() for ln in lines)))
    return "\n".join(out)


def _options(parser: argparse.ArgumentParser) -> str:
    out = []
    for a in parser._actions:
        if isinstance(a, (argparse._SubParsersAction, argparse._HelpAction)) or a.help == argparse.SUPPRESS:
            continue
        metavar = " ".join(a.metavar) if isinstance(a.metavar, tuple) else a.metavar
        if a.option_strings:
            names = ", ".join(a.option_strings)
            if a.nargs != 0:
                names += " " + (metavar or (("{" + ",".join(map(str, a.choices)) + "}") if a.choices
                                            else a.dest.upper()))
        else:
            names = metavar or a.dest.upper()
        out.append(f".TP\n.B {_esc(names)}\n{_esc(a.help or '')}")
    return "\n".join(out)


def _leaves(parser: argparse.ArgumentParser,
            words: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield words, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaves(sub, words + (name,))


def manpage(parser: argparse.ArgumentParser) -> str:
    """csfs(1) in roff (man macros), built from the parser: one subsection per command."""
    from csfs import __version__

    date = datetime.date.today().isoformat()
    out = [f'.TH CSFS 1 "{date}" "csfs {_esc(__version__)}" "User Commands"',
           ".SH NAME", "csfs \\- " + _esc(parser.description or ""),
           ".SH SYNOPSIS", ".B csfs", "[\\-\\-home DIR] [\\-v|\\-q] COMMAND [ARGS]",
           ".SH DESCRIPTION",
           _para("Every command takes a project as its UID in this instance (P3) or as its directory. "
                 "Commands that report something take --json (one JSON object; see the README)."),
           ".SH OPTIONS", _options(parser), ".SH COMMANDS"]
    for words, p in _leaves(parser):
        usage = p.format_usage().removeprefix("usage: ").strip()
        out += [f".SS {_esc(' '.join(words))}", ".nf", _esc(re.sub(r"\s+", " ", usage)), ".fi",
                _para(p.description or ""), _options(p)]
    out += [".SH EXIT STATUS"]
    out += [f".TP\n.B {code}\n{_esc(text)}" for code, text in cli.EXIT_CODES]
    out += [".SH ENVIRONMENT",
            ".TP\n.B CSFS_HOME\n" + _esc("the instance directory (default ~/.local/share/csfs)"),
            ".TP\n.B CSFS_FUSE\n" + _esc("mfusepy or fusepy: force a FUSE binding"),
            ".SH FILES",
            ".TP\n.I $CSFS_HOME/registry.sqlite3\nthe project registry",
            ".TP\n.I $CSFS_HOME/logs/mount_<path>.log\n" + _esc("the log of a background mount"),
            ".SH SEE ALSO", "fusermount3(1), mount(8), fstab(5)"]
    return "\n".join(x for x in out if x) + "\n"
