"""Command-line conventions: --version, -q/-v, documented exit codes, the man page, shell
completion, and a wheel that installs nothing but the csfs package."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO
from csfs import __version__
from csfs.cmd_docs import _leaves
from csfs.main import EXIT_CODES, build_parser


def test_version(csfs):
    r = csfs("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"csfs {__version__}"


def test_help_documents_exit_codes_environment_and_log(csfs):
    r = csfs("--help")
    assert r.returncode == 0
    for code, _ in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+\S", r.stdout, re.M), code
    assert "CSFS_HOME" in r.stdout and "logs/mount_" in r.stdout and "-q, --quiet" in r.stdout


def test_exit_codes_are_what_help_says(csfs, home, tmp_path):
    assert csfs("project", "show", "P9", home=home).returncode == 2            # bad input
    assert csfs("no-such-command", home=home).returncode == 2                 # usage
    assert csfs("project", "create", "X", "--dir", tmp_path, home=home).returncode == 0
    path = tmp_path / "CS-x"
    assert csfs("project", "forget", "P1", home=home).returncode == 1           # refused: attached
    # asking for the state a project is already in: done (0), and said so, for every action
    for args in (("project", "archive", "P1"), ("project", "unarchive", "P1", path),
                 ("project", "detach", "P1"), ("project", "attach", path)):
        first, again = csfs(*args, home=home), csfs(*args, home=home)
        assert first.returncode == 0 and again.returncode == 0 and "already" in again.stdout, again.stdout
    assert csfs("project", "rescue", path, home=home).returncode == 1           # refused: nothing to rescue


def test_interrupt_exits_130(home):
    """SIGINT while a command works: exit 130, one line, no traceback."""
    import signal
    import time

    code = ("import sys, time; import csfs.cmd_job as d; d._cmd_list = lambda a: time.sleep(60); "
            "from csfs.main import main; print('ready', flush=True); sys.exit(main(['jobs', '.']))")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "CSFS_HOME": str(home)}, cwd=REPO)
    assert p.stdout.readline() == "ready\n"
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130 and err == "csfs: interrupted\n"


def test_quiet_and_verbose(csfs, home, tmp_path):
    r = csfs("-q", "demo", tmp_path / "q", home=home)
    assert r.returncode == 0 and r.stderr == ""
    r = csfs("-v", "project", "show", "P9", home=home)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = csfs("-vv", "project", "show", "P9", home=home)
    assert r.returncode != 0 and "Traceback" in r.stderr      # -vv shows the traceback (like --debug)


def test_man_page_has_every_command_and_renders(csfs):
    r = csfs("man")
    assert r.returncode == 0
    page = r.stdout
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert f"\n.SH {section}\n" in page, section
    commands = [" ".join(w) for w, _ in _leaves(build_parser())]
    assert len(re.findall(r"^\.SS ", page, re.M)) == len(commands)
    for c in commands:
        assert f".SS {c.replace('-', chr(92) + '-')}\n" in page, c
    groff = shutil.which("groff")
    assert groff, "groff is missing (apt-get install groff-base, which man-db depends on)"
    g = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True, text=True)
    assert g.returncode == 0 and g.stderr == "", g.stderr    # no roff warnings
    if shutil.which("man"):
        m = subprocess.run(["man", "-l", "-"], input=page, capture_output=True, text=True,
                           env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "COLUMNS": "100"})
        assert m.returncode == 0 and "csfs project forget" in m.stdout and "EXIT STATUS" in m.stdout


@pytest.fixture
def csfs_on_path(tmp_path) -> dict:
    """An environment whose PATH has a `csfs` running this checkout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "csfs"
    script.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m csfs \"$@\"\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}


def _bash_complete(env: dict, line: str) -> list[str]:
    """What bash completes for `line`, through the script `csfs completion bash` prints."""
    words = line.split(" ")
    script = (f'eval "$(csfs completion bash)"\n'
              f'COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=({" ".join(words)}'
              f'{" " + chr(39) + chr(39) if line.endswith(" ") else ""}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1))\n'
              f'_python_argcomplete csfs\nprintf "%s\\n" "${{COMPREPLY[@]}}"\n')
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return sorted(w.strip() for w in r.stdout.splitlines() if w.strip())


def test_bash_completion(csfs_on_path):
    assert _bash_complete(csfs_on_path, "csfs pro") == ["project"]
    assert {"attach", "detach", "forget", "list"} <= set(_bash_complete(csfs_on_path, "csfs project "))
    assert _bash_complete(csfs_on_path, "csfs project forget --mi") == ["--missing"]
    assert _bash_complete(csfs_on_path, "csfs import raw P1 --kind mo") == ["movies"]


def test_zsh_completion(csfs_on_path):
    """The zsh script registers for csfs; the completions it asks for (as zsh would) are right."""
    r = subprocess.run(["csfs", "completion", "zsh"], capture_output=True, text=True, env=csfs_on_path)
    assert r.returncode == 0 and r.stdout.startswith("#compdef csfs") and "_ARGCOMPLETE_SHELL=\"zsh\"" in r.stdout
    line = "csfs project ar"
    env = {**csfs_on_path, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_SHELL": "zsh", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_SUPPRESS_SPACE": "1", "IFS": "\013"}
    r = subprocess.run(["bash", "-c", "csfs 8>&1 9>/dev/null 1>/dev/null 2>&1"], capture_output=True, text=True,
                       env=env, timeout=60)
    names = sorted(w.split(":")[0] for w in r.stdout.split("\013") if w)
    assert names == ["archive"], r.stdout
    if shutil.which("zsh"):
        z = subprocess.run(["zsh", "-n", "-c", r.stdout], capture_output=True, text=True)
        assert z.returncode == 0, z.stderr


def test_wheel_installs_only_the_csfs_package(tmp_path):
    """`pip wheel --no-deps` of the checkout: one top-level package, csfs (with core and
    mountpoints inside it), and the console scripts."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__",
                                                             ".pytest_cache"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "w", src],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "w").glob("csfs-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"csfs", f"csfs-{__version__}.dist-info"}, tops
    assert "csfs/core/project.py" in names and "csfs/mountpoints/fs.py" in names
    entry = zipfile.ZipFile(wheel).read(f"csfs-{__version__}.dist-info/entry_points.txt").decode()
    assert "csfs = csfs.main:main" in entry
    meta = zipfile.ZipFile(wheel).read(f"csfs-{__version__}.dist-info/METADATA").decode()
    assert "Requires-Dist: argcomplete" in meta and re.search(r"Requires-Dist: mrcfile.*extra == .test.", meta)
