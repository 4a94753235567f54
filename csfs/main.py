"""`csfs` entry point: builds the parser from the command modules and maps errors to exit codes."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from csfs.core.errors import CsfsError

from . import (
    cli,
    cmd_data,
    cmd_demo,
    cmd_docs,
    cmd_formats,
    cmd_group,
    cmd_import,
    cmd_instance,
    cmd_job,
    cmd_mount,
    cmd_project,
)
from .cli import EXIT_CODES

# Each module adds its command (group) in register(subparsers, common); each subcommand
# sets func=callable(args) -> int | None. The order here is the order of `csfs --help`.
COMMAND_MODULES = (cmd_formats, cmd_docs, cmd_demo, cmd_instance, cmd_project, cmd_job, cmd_group, cmd_import,
                   cmd_data, cmd_mount)


EPILOG = ("exit status:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES) + """

environment:
  CSFS_HOME      the instance directory (default ~/.local/share/csfs; --home overrides it)
  CSFS_FUSE      mfusepy or fusepy: force a FUSE binding for `csfs mount`

files:
  $CSFS_HOME/registry.sqlite3        the project registry
  $CSFS_HOME/logs/mount_<path>.log   the log of a background `csfs mount` (its server's
                                     warnings and errors; -v on the mount adds more)

Shell completion: eval "$(csfs completion bash)" (or zsh). Manual: csfs man | man -l -""")


class _Version(argparse.Action):
    """--version, the version read only when asked for (csfs.__version__)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from csfs import __version__

        print(f"csfs {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    cli.reset()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS,
                        help="instance directory (default: $CSFS_HOME, else ~/.local/share/csfs)")
    parser = argparse.ArgumentParser(
        prog="csfs",
        description="Keep CryoSPARC project directories safe, movable and shareable: "
                    "lifecycle with enforced cs.lock, exports, sizes, cleanup, and a FUSE mount.",
        parents=[common], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="say more: -v logs what is done, -vv also debug detail and tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="say less: no progress bars and no warnings, only results and errors")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors (same as -vv)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub, common)
    parser.set_defaults(parser=parser)   # `csfs man` documents the whole parser
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    import logging

    from . import output

    if args.verbose >= 2:
        args.debug = True
    output.QUIET = args.quiet
    level = logging.ERROR if args.quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s csfs %(levelname)s %(message)s")


def mount_helper_argv(argv: list[str], commands: set[str]) -> list[str]:
    """`csfs SOURCE MOUNTPOINT [-o OPTS]`, as mount(8) runs a `fuse.csfs` fstab line through
    mount.fuse3 (like sshfs), becomes `csfs mount SOURCE MOUNTPOINT [-o OPTS]`. Only when
    SOURCE is no command and MOUNTPOINT an existing absolute directory, so typos stay errors."""
    if (len(argv) >= 2 and argv[0] not in commands and not argv[0].startswith("-")
            and os.path.isabs(argv[1]) and os.path.isdir(argv[1])):
        return ["mount", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    argv = mount_helper_argv(argv, set(sub.choices))
    if "_ARGCOMPLETE" in os.environ:   # the shell asks for completions (csfs completion bash|zsh)
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    if not hasattr(args, "home"):
        args.home = None
    _setup_logging(args)
    try:
        return int(args.func(args) or 0)
    except CsfsError as e:
        if args.debug:
            raise
        print(f"csfs: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("csfs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # the file system refused (permissions, full disk, a file in the way)
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"csfs: {where}{e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
