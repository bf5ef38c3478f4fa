"""Amazon Linux 2023 fidelity of the EC2 hosts (issue #21), without Docker.

The hosts run AL2023; locally they run in Debian boxes (local/box/). components/al2023_packages.json
records, from AL2023's published package list, the package (and its version in the release checked)
of everything the hosts need: each package user data installs and each external command that user
data, the host scripts, the units and the SSM documents run. The commands are found by reading the
scripts as bash does (`ShellScript` below), from what the synthesized launch template ships: a command
added to a script without checking AL2023 fails here.

Where the box's Debian differs in what the scripts rely on, the behaviour is tested here on the box's
own binaries: HAProxy (2.6 in the box, 2.8 on AL2023) driven by the scripts' own config and runtime
API commands; awk (mawk in the box, gawk on AL2023) running the scripts' awk programs; the box's
cfn-signal and dnf stand-ins against what user data calls. docs/local-emulator.md ("Amazon Linux 2023
fidelity") has the table.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from local.images import BOX_PACKAGES
from tests.helpers.synth import host_files_in_assembly

REPO = Path(__file__).resolve().parents[2]
RECORD = REPO / "components" / "al2023_packages.json"
HOST_BIN = REPO / "components" / "ec2_host" / "bin"
COMMON = HOST_BIN / "liftoff-common.sh"
PROXY_UNIT = REPO / "components" / "ec2_host" / "liftoff-proxy.service"
BOX_ROOTFS = REPO / "local" / "box" / "rootfs"
SCRIPTS_DIR = "opt/liftoff/bin/"
UNITS_DIR = "etc/systemd/system/"

# --- reading bash -----------------------------------------------------------------------------------

NAME_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
REDIRECTION = re.compile(r"[0-9]*(<<<|<<-|<<|&>>|&>|>>|>&|<&|>\||<>|>|<)")
OPERATORS = ("&&", "||", ";;", "|&", ";", "&", "|", "(", ")", "\n")
# Words after which the next word is a command again (and `exec`/`command`, which run the next word).
LEADING_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time", "exec", "command"}
CLOSING_KEYWORDS = {"fi", "done", "}", "esac"}
EXPANSION = "\x00"  # stands for an expansion ($x, ${x}, $(...), $((...))) inside a word


@dataclass(frozen=True)
class Command:
    """One simple command: its words as written (`raw`) and as literal text with each expansion
    replaced by EXPANSION (`words`), leading assignments and keywords left out."""

    words: tuple[str, ...]
    raw: tuple[str, ...]
    line: int
    source: str

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


class ShellScript:
    """The simple commands of a bash script, found as bash reads it: quotes, escapes, comments,
    heredocs, redirections, assignments, compound commands, case patterns, `[[ ]]`, function
    definitions and trap actions; every command substitution (`$(...)` and backticks, in double
    quotes and in `${...}` too) is read as a script of its own."""

    def __init__(self, text: str, source: str = "<script>", first_line: int = 1):
        self.text, self.source, self.first_line, self.pos = text, source, first_line, 0
        self.commands: list[Command] = []
        self.functions: set[str] = set()
        self._heredocs: list[tuple[str, bool]] = []
        self._parse_list(stop=None)

    def _peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def _line(self) -> int:
        return self.first_line + self.text.count("\n", 0, self.pos)

    def _inner(self, text: str, line: int) -> None:
        inner = ShellScript(text, self.source, line)
        self.commands.extend(inner.commands)
        self.functions |= inner.functions

    def _skip_blanks(self) -> None:
        while self.pos < len(self.text):
            if self.text[self.pos] in " \t":
                self.pos += 1
            elif self._peek(2) == "\\\n":
                self.pos += 2
            elif self.text[self.pos] == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    # words
    def _word(self) -> tuple[str, bool]:
        """The word at pos as literal text (expansions as EXPANSION), and whether any of it was quoted."""
        out: list[str] = []
        quoted = False
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t\n;&|()<>":
                so_far = "".join(out)
                if c == "(" and so_far.endswith("=") and NAME_ASSIGNMENT.match(so_far):
                    out.append(self._array())
                    continue
                break
            if c == "\\":
                out.append(self.text[self.pos + 1:self.pos + 2])
                self.pos += 2
            elif c == "'":
                end = self.text.index("'", self.pos + 1)
                out.append(self.text[self.pos + 1:end])
                self.pos, quoted = end + 1, True
            elif c == '"':
                self.pos += 1
                out.append(self._double_quoted())
                quoted = True
            elif c == "$":
                out.append(self._dollar())
            elif c == "`":
                out.append(self._backticks())
            else:
                out.append(c)
                self.pos += 1
        return "".join(out), quoted

    def _array(self) -> str:
        self.pos += 1
        while True:
            self._skip_blanks()
            if self._peek() == "\n":
                self.pos += 1
            elif self._peek() == ")":
                self.pos += 1
                return EXPANSION
            else:
                self._word()

    def _double_quoted(self) -> str:
        out = []
        while self.text[self.pos] != '"':
            c = self.text[self.pos]
            if c == "\\":
                out.append(self.text[self.pos + 1])
                self.pos += 2
            elif c == "$":
                out.append(self._dollar())
            elif c == "`":
                out.append(self._backticks())
            else:
                out.append(c)
                self.pos += 1
        self.pos += 1
        return "".join(out)

    def _dollar(self) -> str:
        if self.text.startswith("$((", self.pos):
            depth, self.pos = 0, self.pos + 1
            while True:
                depth += {"(": 1, ")": -1}.get(self.text[self.pos], 0)
                self.pos += 1
                if depth == 0:
                    return EXPANSION
        if self.text.startswith("$(", self.pos):
            self.pos += 2
            self._parse_list(stop=")")
            return EXPANSION
        if self.text.startswith("${", self.pos):
            self.pos += 2
            depth = 1
            while depth:
                c = self.text[self.pos]
                if self._skip_quoted_or_substituted(c):
                    pass
                elif c == "\\":
                    self.pos += 2
                else:
                    depth += {"{": 1, "}": -1}.get(c, 0)
                    self.pos += 1
            return EXPANSION
        if self.text.startswith("$'", self.pos):
            end = self.pos + 2
            while self.text[end] != "'":
                end += 2 if self.text[end] == "\\" else 1
            literal = self.text[self.pos + 2:end].encode().decode("unicode_escape")
            self.pos = end + 1
            return literal
        match = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])").match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return EXPANSION
        self.pos += 1
        return "$"

    def _backticks(self) -> str:
        end = self.text.index("`", self.pos + 1)
        self._inner(self.text[self.pos + 1:end], self._line())
        self.pos = end + 1
        return EXPANSION

    # commands
    def _heredoc_bodies(self) -> None:
        """At the line after a heredoc's redirection: its body is data (an unquoted one's substitutions
        still run)."""
        for delimiter, quoted in self._heredocs:
            while self.pos < len(self.text):
                end = self.text.find("\n", self.pos)
                end = len(self.text) if end < 0 else end
                line = self.text[self.pos:end]
                if line.lstrip("\t") == delimiter:
                    self.pos = end + 1
                    break
                if not quoted and ("$(" in line or "`" in line):
                    self._inner('"' + line.replace('"', '\\"') + '"', self._line())
                self.pos = end + 1
        self._heredocs = []

    def _skip_test(self) -> None:
        """`[[ ... ]]`: operands, not commands (its regexes may hold `(`, `|`); substitutions still run."""
        while not (self.text.startswith("]]", self.pos) and self.text[self.pos - 1] in " \t"):
            c = self.text[self.pos]
            if not self._skip_quoted_or_substituted(c):
                self.pos += 2 if c == "\\" else 1
        self.pos += 2

    def _skip_quoted_or_substituted(self, c: str) -> bool:
        """A substitution or a quoted string starting at pos (its first character `c`) skipped; False for anything else."""
        if c == "$":
            self._dollar()
        elif c == '"':
            self.pos += 1
            self._double_quoted()
        elif c == "'":
            self.pos = self.text.index("'", self.pos + 1) + 1
        else:
            return False
        return True

    def _case(self) -> None:
        """After `case`: the subject up to `in`, then each `pattern)` and its commands up to `;;` or `esac`."""
        while True:
            self._skip_blanks()
            word, _ = self._word()
            if word == "in":
                break
            if not word:
                self.pos += 1
        while True:
            while True:
                self._skip_blanks()
                if self._peek() != "\n":
                    break
                self.pos += 1
                self._heredoc_bodies()
            if re.compile(r"esac\b").match(self.text, self.pos):
                self.pos += 4
                return
            if self._peek() == "(":
                self.pos += 1
            while self._peek() != ")":  # the pattern, with its alternatives
                if self._peek() in "\"'$\\":
                    self._word()
                else:
                    self.pos += 1
            self.pos += 1
            if self._parse_list(stop=";;") == "esac":
                return

    def _parse_list(self, stop: str | None) -> str | None:
        """Commands up to `stop`: ")" ends a command substitution, ";;" a case item (which may also end
        at `esac`, returned then)."""
        words: list[tuple[str, bool, str]] = []
        line, depth = self._line(), 0
        while True:
            self._skip_blanks()
            if self.pos >= len(self.text):
                self._emit(words, line)
                return None
            redirection = REDIRECTION.match(self.text, self.pos)
            if redirection:
                self.pos = redirection.end()
                self._skip_blanks()
                target, quoted = self._word()
                if redirection.group(1) in ("<<", "<<-"):
                    self._heredocs.append((target, quoted))
                continue
            operator = next((op for op in OPERATORS if self.text.startswith(op, self.pos)), None)
            if operator:
                if operator == "(" and len(words) == 1 and self._peek(2) == "()":  # name() { ... }
                    self.functions.add(words[0][0])
                    words, self.pos = [], self.pos + 2
                    continue
                self._emit(words, line)
                words = []
                if operator == ";;" and stop == ";;":
                    self.pos += 2
                    return stop
                if operator == ")":
                    if depth == 0 and stop == ")":
                        self.pos += 1
                        return stop
                    depth -= 1
                elif operator == "(":
                    depth += 1
                self.pos += len(operator)
                if operator == "\n":
                    self._heredoc_bodies()
                line = self._line()
                continue
            start = self.pos
            word, quoted = self._word()
            if self.pos == start:
                raise ValueError(f"{self.source}:{self._line()}: cannot read {self.text[self.pos:self.pos + 30]!r}")
            at_command = all(w in LEADING_KEYWORDS or NAME_ASSIGNMENT.match(w) for w, _, _ in words)
            if at_command and not quoted:
                if word == "[[":
                    self._skip_test()
                    continue
                if word == "case":
                    self._case()
                    continue
                if word == "esac" and stop == ";;":
                    self._emit(words, line)
                    return "esac"
                if word == "function":
                    self._skip_blanks()
                    self.functions.add(self._word()[0])
                    continue
            words.append((word, quoted, self.text[start:self.pos]))

    def _emit(self, words: list[tuple[str, bool, str]], line: int) -> None:
        while words and (words[0][0] in LEADING_KEYWORDS or NAME_ASSIGNMENT.match(words[0][0])):
            words = words[1:]
        if not words or words[0][0] in CLOSING_KEYWORDS or words[0][0] == "for":
            return
        command = Command(tuple(w for w, _, _ in words), tuple(r for _, _, r in words), line, self.source)
        self.commands.append(command)
        if command.words[0] == "trap" and len(command.words) > 1:  # the trap's action is a script too
            self._inner(command.words[1], line)


def shebang_commands(text: str, source: str) -> list[Command]:
    """`#!/usr/bin/env bash` runs env and bash; `#!/bin/bash` runs /bin/bash."""
    if not text.startswith("#!"):
        return []
    words = tuple(text.splitlines()[0][2:].split())
    commands = [Command(words[:1], words[:1], 1, source)]
    if Path(words[0]).name == "env" and len(words) > 1:
        commands.append(Command(words[1:2], words[1:2], 1, source))
    return commands


# --- what the hosts run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HostSources:
    """What the synthesized app ships to an EC2 host: user data, the files in its archive (scripts and
    units) and the SSM Command documents' runCommand lines."""

    user_data: str
    files: dict[str, bytes]
    run_commands: dict[str, list[str]]

    @property
    def scripts(self) -> dict[str, str]:
        return {Path(name).name: data.decode() for name, data in self.files.items() if name.startswith(SCRIPTS_DIR)}

    @property
    def units(self) -> dict[str, str]:
        return {Path(name).name: data.decode() for name, data in self.files.items() if name.startswith(UNITS_DIR)}

    def shell_texts(self) -> dict[str, str]:
        """Every piece of shell a host runs, by where it comes from."""
        texts = {"user data": self.user_data}
        texts.update({f"{SCRIPTS_DIR}{name}": text for name, text in self.scripts.items()})
        for document, lines in self.run_commands.items():
            texts.update({f"SSM document {document} runCommand[{i}]": line for i, line in enumerate(lines)})
        return texts


def rendered_user_data(launch_template: dict) -> str:
    """The user data with every CloudFormation token replaced by a placeholder word."""
    parts = launch_template["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else "CFNTOKEN" for part in parts)


def host_sources(template: dict, outdir: Path) -> HostSources:
    (launch_template,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::LaunchTemplate"]
    user_data = rendered_user_data(launch_template)
    files = host_files_in_assembly(outdir, template)
    run_commands = {
        name: [line for step in r["Properties"]["Content"]["mainSteps"] for line in step["inputs"]["runCommand"]]
        for name, r in template["Resources"].items() if r["Type"] == "AWS::SSM::Document"
    }
    return HostSources(user_data, files, run_commands)


def all_commands(sources: HostSources) -> tuple[list[Command], set[str]]:
    """Every simple command in the hosts' shell (shebangs included), and the functions the shell defines."""
    commands: list[Command] = []
    functions: set[str] = set()
    for source, text in sources.shell_texts().items():
        script = ShellScript(text, source)
        commands += shebang_commands(text, source) + script.commands
        functions |= script.functions
    return commands, functions


def unit_commands(units: dict[str, str]) -> list[Command]:
    """The program each Exec*= line of the units runs (systemd's prefixes -@:+! stripped)."""
    commands = []
    for name, text in units.items():
        for number, line in enumerate(text.splitlines(), 1):
            match = re.match(r"Exec[A-Za-z]*=([-@:+!]*)(\S+)", line)
            if match:
                commands.append(Command((match.group(2),), (match.group(2),), number, name))
    return commands


def bash_builtins() -> set[str]:
    """Bash's own builtins and keywords, from bash (5.2 here, in the box and on AL2023)."""
    run = subprocess.run(["bash", "-c", "compgen -b; compgen -k"], capture_output=True, text=True, check=True)
    return set(run.stdout.split())


def external_commands(sources: HostSources) -> dict[str, list[str]]:
    """Each program the hosts run that is neither bash's own nor shipped in the host files archive,
    with where it is run. A command name that stays an expansion is reported as such."""
    commands, functions = all_commands(sources)
    commands += unit_commands(sources.units)
    own = set(sources.scripts)
    builtins = bash_builtins()
    found: dict[str, list[str]] = {}
    for command in commands:
        name = command.words[0]
        if name in builtins or name in functions:
            continue
        base = name.rsplit("/", 1)[-1]
        if base in own and (name.startswith("/" + SCRIPTS_DIR) or name.startswith(EXPANSION + "/")):
            continue
        key = name if EXPANSION not in name else f"<expansion: {command.raw[0]}>"
        found.setdefault(key, []).append(command.where)
    return found


def dnf_installs(user_data: str) -> list[str]:
    packages = []
    for command in ShellScript(user_data, "user data").commands:
        if command.words[0] == "dnf" and "install" in command.words:
            after = command.words[command.words.index("install") + 1:]
            packages += [word for word in after if not word.startswith("-")]
    return packages


def aws_cli_commands(sources: HostSources) -> set[str]:
    """`service operation` (`service wait waiter`) of each AWS CLI call the hosts make."""
    calls = set()
    for command in all_commands(sources)[0]:
        words = command.words
        if words[0] == "aws_call":  # `aws_call SERVICE TARGET BODY CLI_WORDS...`: the CLI's where curl cannot sign
            words = ["aws", *words[4:]]
        if words[0] == "aws" and "\x00" not in words[1]:  # not aws_call's own `aws "$@"`
            words = [w for w in words[1:] if not w.startswith("-")]
            calls.add(" ".join(words[:3] if words[1] == "wait" else words[:2]))
    return calls


def command_packages(record: dict) -> dict[str, str]:
    return {command: name for name, package in record["packages"].items() for command in package["commands"]}


def uncovered(found: dict[str, list[str]], record: dict) -> dict[str, list[str]]:
    """The commands found that no recorded AL2023 package provides."""
    provided = command_packages(record)
    return {command: where for command, where in found.items() if command not in provided}


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(RECORD.read_text())


@pytest.fixture(scope="module")
def template(shipped) -> dict:
    (found,) = [t for t in shipped.templates.values()
                if any(r["Type"] == "AWS::EC2::LaunchTemplate" for r in t["Resources"].values())]
    return found


@pytest.fixture(scope="module")
def sources(template, shipped) -> HostSources:
    return host_sources(template, shipped.outdir)


@pytest.fixture(scope="module")
def found(sources) -> dict[str, list[str]]:
    return external_commands(sources)


# --- the record ------------------------------------------------------------------------------------


def test_the_record_names_the_release_checked_and_a_published_source_for_every_version(record):
    assert re.fullmatch(r"2023\.\d+\.\d{8}", record["release"])
    for key, source in record["sources"].items():
        assert source["url"].startswith("https://"), key
    for name, package in record["packages"].items():
        # Versions come from AWS's AL2023 release notes.
        assert record["sources"][package["source"]]["url"].startswith(
            "https://docs.aws.amazon.com/linux/al2023/release-notes/"), name
        version = package["version"]
        # A version is AL2023's own build (".amzn2023"), or none with a note saying why.
        assert (isinstance(version, str) and ".amzn2023" in version) or (version is None and package.get("note")), name
        assert package["installed"] in ("user data", "default AMI"), name
        if package["installed"] == "default AMI" and package["default_ami_source"]:
            assert package["default_ami_source"] in record["sources"], name
        for key in ("commands_source", "available_since_source", "runtime_api_source", "cfn_signal_options_source"):
            assert package.get(key) is None or package[key] in record["sources"], (name, key)


def test_user_data_installs_exactly_the_packages_recorded_as_installed_by_it(sources, record):
    installs = dnf_installs(sources.user_data)
    assert installs, "user data installs nothing with dnf"
    recorded = {name for name, package in record["packages"].items() if package["installed"] == "user data"}
    missing = [package for package in installs if package not in record["packages"]]
    assert not missing, (f"user data installs {missing}, which {RECORD.relative_to(REPO)} does not record: check "
                         f"AL2023's package list ({record['sources']['al2023.1-all-packages']['url']}) and add them")
    assert set(installs) == recorded


def test_every_command_the_hosts_run_comes_from_a_recorded_al2023_package(found, record):
    missing = uncovered(found, record)
    assert not missing, (f"the hosts run commands that no package in {RECORD.relative_to(REPO)} provides "
                         f"(check each against AL2023's package list and record its package): {missing}")


def test_every_recorded_command_is_still_run(found, record):
    # The record stays true to the scripts: a command they stopped running leaves it.
    assert set(command_packages(record)) == set(found)


def test_each_command_is_installed_by_user_data_or_comes_with_the_default_ami(found, record, sources):
    installs = set(dnf_installs(sources.user_data))
    provided = command_packages(record)
    for command in found:
        package = provided[command]
        assert package in installs or record["packages"][package]["installed"] == "default AMI", (command, package)


def test_the_aws_cli_calls_are_the_recorded_ones(sources, record):
    assert aws_cli_commands(sources) == set(record["packages"]["awscli-2"]["cli_commands"])


# --- the extractor ---------------------------------------------------------------------------------

SAMPLE = """#!/usr/bin/env bash
# rsync in a comment is no command
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/liftoff-common.sh"
helper() {
    local out
    out="$(sha1sum "$1" | cut -d' ' -f1)"
    printf '%s' "$out"
}
TMPDIR=/tmp nproc >/dev/null 2>&1
if ! ping -c1 host; then echo "nc here is only text"; fi
[[ "$(uname -m)" =~ ^(aarch64|x86_64)$ ]] && helper /etc/hosts
case "${1:-}" in
    -v|--verbose) stat /etc ;;
    *) : ;;
esac
cat <<'EOF' | tee /tmp/out
curl inside a heredoc is data
EOF
trap 'shred -u /tmp/out' EXIT
for f in a b; do touch "$f"; done
x="${Y:-$(whoami)}"
( cd /tmp && make ) | wc -l
y=`id -u`
"$LIFTOFF_BIN_DIR/liftoff-retire" a
"""


def test_the_extractor_finds_commands_wherever_bash_would_run_them():
    script = ShellScript(SAMPLE, "sample")
    names = {command.words[0] for command in script.commands}
    assert {"sha1sum", "cut", "nproc", "ping", "uname", "stat", "cat", "tee", "shred", "touch", "whoami", "make",
            "wc", "id", "dirname", "helper", "printf", "set", "echo", "local", ":", "cd"} <= names
    # Not commands: a comment, quoted text, a heredoc's body, a loop variable, the function's own name.
    assert not names & {"rsync", "nc", "curl", "f", "a", "TMPDIR=/tmp"}
    assert script.functions == {"helper"}


def test_a_command_added_to_a_host_script_fails_the_check_until_it_is_recorded(sources, record):
    files = dict(sources.files)
    stage = SCRIPTS_DIR + "liftoff-stage"
    files[stage] = files[stage].replace(b'pull_image "$tag"\n', b'pull_image "$tag"\nrsync -a /var/lib/docker /mnt\n')
    changed = HostSources(sources.user_data, files, sources.run_commands)
    line = files[stage].decode().splitlines().index("rsync -a /var/lib/docker /mnt") + 1
    assert uncovered(external_commands(changed), record) == {"rsync": [f"{stage}:{line}"]}
    assert uncovered(external_commands(sources), record) == {}


def test_a_package_added_to_user_data_is_seen():
    user_data = "#!/bin/bash\nset -euo pipefail\ndnf install -y docker jq \\\n    nginx\n"
    assert dnf_installs(user_data) == ["docker", "jq", "nginx"]


# --- where the box's Debian differs ----------------------------------------------------------------


def test_the_box_dnf_provides_every_package_user_data_installs(sources):
    # The box has no AL2023 repository: its dnf only checks that the package is preinstalled.
    stand_in = (BOX_ROOTFS / "usr" / "local" / "bin" / "dnf").read_text()
    declaration = re.search(r"^declare -A provides=\(.*?\)$", stand_in, re.S | re.M).group(0)
    run = subprocess.run(["bash", "-c", declaration + '\nprintf "%s\\n" "${!provides[@]}"'], capture_output=True,
                         text=True, check=True)
    assert set(dnf_installs(sources.user_data)) <= set(run.stdout.split())


def test_each_recorded_package_has_its_counterpart_in_the_box(record):
    # Debian's required packages: in every minbase root filesystem, the box's included.
    minbase_essential = {"bash", "coreutils", "util-linux", "mawk", "grep", "sed", "tar", "hostname", "gzip"}
    for name, package in record["packages"].items():
        box = package["box"]
        if box["debian_package"] is None:
            assert (REPO / box["stand_in"]).is_file(), name
        else:
            assert box["debian_package"] in BOX_PACKAGES or box["debian_package"] in minbase_essential, name
        assert not box["matters"] or box.get("why"), f"{name}: say why the difference matters"


def cfn_signal_calls(user_data: str) -> list[Command]:
    return [c for c in ShellScript(user_data, "user data").commands if c.words[0].endswith("/cfn-signal")]


def test_user_data_signals_through_al2023s_cfn_signal_path_with_documented_options(sources, record):
    bootstrap = record["packages"]["aws-cfn-bootstrap"]
    (call,) = cfn_signal_calls(sources.user_data)
    assert call.words[0] in bootstrap["commands"]
    assert (BOX_ROOTFS / call.words[0].lstrip("/")).is_file(), "the box's cfn-signal is not where user data calls it"
    options = {word for word in call.words if word.startswith("-")}
    assert options <= set(bootstrap["cfn_signal_options"])


@pytest.mark.parametrize(("exit_code", "status"), [("0", "SUCCESS"), ("1", "FAILURE")])
def test_the_box_cfn_signal_takes_the_user_datas_call(sources, exit_code, status):
    # The stand-in writes /var/lib/liftoff-box/cfn-signal.json: run it in a private mount namespace
    # with a scratch /var/lib, so nothing on this machine changes.
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs a mount namespace (unshare -m) to give the stand-in a scratch /var/lib")
    (call,) = cfn_signal_calls(sources.user_data)
    argv = [str(BOX_ROOTFS / call.words[0].lstrip("/"))] + [
        exit_code if raw == "$exitCode" else word for word, raw in zip(call.words[1:], call.raw[1:])]
    script = 'mount -t tmpfs tmpfs /var/lib && bash "$@" && cat /var/lib/liftoff-box/cfn-signal.json'
    run = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    signal_record = json.loads(run.stdout[run.stdout.index("{"):])
    assert signal_record["status"] == status and signal_record["stack"] == call.words[call.words.index("--stack") + 1]


# HAProxy: 2.6 in the box, 2.8 on AL2023. What the scripts rely on, on the box's binary.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unit_exec(key: str) -> list[str]:
    """An Exec line of liftoff-proxy.service, run against a config here instead of /etc/liftoff."""
    line = next(line for line in PROXY_UNIT.read_text().splitlines() if line.startswith(f"{key}="))
    return line.split("=", 1)[1].split()


class HostProxy:
    """HAProxy started as liftoff-proxy.service starts it, from the config write_proxy_config writes."""

    def __init__(self, directory: Path):
        self.dir = directory
        (directory / "bin").mkdir()
        systemctl = directory / "bin" / "systemctl"  # the proxy unit "is active": it is this HAProxy
        systemctl.write_text("#!/bin/sh\nexit 0\n")
        systemctl.chmod(0o755)
        self.env = {"PATH": f"{directory / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "LIFTOFF_CONFIG_DIR": str(directory),
                    "LIFTOFF_PROXY_SOCKET": str(directory / "admin.sock"), "CONTAINER_PORT": str(free_port()),
                    "SLOT_A_PORT": str(free_port()), "SLOT_B_PORT": str(free_port())}
        self.shell("write_proxy_config a")
        self.config = directory / "proxy.cfg"
        self.process: subprocess.Popen | None = None

    def command(self, key: str) -> list[str]:
        argv = unit_exec(key)
        assert argv[0] == "/usr/sbin/haproxy" and "/etc/liftoff/proxy.cfg" in argv
        return [shutil.which("haproxy")] + [str(self.config) if a == "/etc/liftoff/proxy.cfg" else a for a in argv[1:]]

    def start(self) -> str:
        """Start it as ExecStart does, under Type=notify: returns what it told the notify socket, up to
        READY=1 (or 20 s)."""
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(self.dir / "notify.sock"))
        notify.settimeout(20)
        log = (self.dir / "haproxy.log").open("w")
        self.process = subprocess.Popen(self.command("ExecStart"), stdout=log, stderr=subprocess.STDOUT,
                                        env={**self.env, "NOTIFY_SOCKET": str(self.dir / "notify.sock")})
        messages: list[str] = []
        try:
            while not any("READY=1" in m.split("\n") for m in messages):
                messages.append(notify.recv(4096).decode())
        except socket.timeout:
            pass
        finally:
            notify.close()
        return "\n".join(messages)

    def shell(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f'set -euo pipefail; . "{COMMON}"; {command}'], capture_output=True,
                              text=True, env=self.env, timeout=60)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # KillMode=mixed: SIGTERM to the master
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def host_proxy(tmp_path):
    if not (shutil.which("haproxy") and shutil.which("socat")):
        pytest.fail("haproxy and socat are needed (.ci/run installs them)")
    proxy = HostProxy(tmp_path)
    yield proxy
    proxy.stop()


def proxy_command_lines(sources: HostSources) -> list[str]:
    """Each runtime API line the scripts send (proxy_command's argument), expanded by bash with a
    switch to slot b from slot a and a 10 % canary."""
    raws = [c.raw[1] for c in all_commands(sources)[0] if c.words[0] == "proxy_command"]
    values = "slot=b; new=b; old=a; FULL_WEIGHT=100; CANARY_PERCENT=10"
    run = subprocess.run(["bash", "-c", f"{values}; printf '%s\\n' {' '.join(raws)}"], capture_output=True, text=True,
                         check=True)
    return run.stdout.splitlines()


def test_the_proxy_config_passes_haproxys_check_without_a_warning(host_proxy):
    check = subprocess.run(host_proxy.command("ExecStartPre"), capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and check.stdout + check.stderr == ""
    loud = subprocess.run([a for a in host_proxy.command("ExecStartPre") if a != "-q"], capture_output=True, text=True)
    assert loud.returncode == 0 and not re.search(r"\[(WARNING|ALERT)\]", loud.stdout + loud.stderr), loud.stderr


def test_haproxy_tells_systemd_it_is_ready_as_the_units_type_notify_needs(host_proxy):
    assert "Type=notify" in PROXY_UNIT.read_text()
    assert "READY=1" in host_proxy.start().split("\n")


def test_every_runtime_api_line_the_scripts_send_is_accepted(host_proxy, sources, record):
    lines = proxy_command_lines(sources)
    verbs = {" ".join(part.split()[:2]) for line in lines for part in line.split(";")}
    assert verbs == set(record["packages"]["haproxy"]["runtime_api"])
    host_proxy.start()
    for line in lines:
        answer = host_proxy.shell(f"proxy_command {shlex.quote(line)}")
        assert answer.returncode == 0, answer.stderr
        if line.startswith("show "):
            assert answer.stdout.startswith("# pxname,svname,"), answer.stdout[:200]
        else:
            # HAProxy answers a command it carried out with an empty line, anything else with words.
            assert answer.stdout.strip() == "", f"{line!r}: {answer.stdout!r}"


def test_show_stat_has_every_column_the_scripts_read(host_proxy):
    host_proxy.start()
    header = host_proxy.shell("proxy_command 'show stat'").stdout.splitlines()[0].lstrip("# ").split(",")
    read = set(re.findall(r'col\["(\w+)"\]', COMMON.read_text())) | {"status"}
    assert read - {"status"} and read <= set(header), read - set(header)


def test_the_scripts_switch_slots_through_the_runtime_api_and_read_the_switch_back(host_proxy):
    host_proxy.start()
    assert host_proxy.shell("proxy_slot").stdout == "a"
    for slot in ("b", "a", "b"):
        switched = host_proxy.shell(f"route_to_slot {slot} && proxy_slot")
        assert switched.returncode == 0 and switched.stdout == slot, switched.stderr


# awk: gawk on AL2023, mawk in the box.

# gawk's built-in functions and keywords (gawk manual, "Built-in Functions" and "Keywords";
# https://www.gnu.org/software/gawk/manual/html_node/Built_002din.html): gawk refuses them as variable
# names ("cannot use gawk builtin `or' as variable name", exit 2) where mawk takes them.
GAWK_RESERVED = {
    "atan2", "cos", "exp", "int", "log", "rand", "sin", "sqrt", "srand", "asort", "asorti", "gensub", "gsub", "index",
    "length", "match", "patsplit", "split", "sprintf", "strtonum", "sub", "substr", "tolower", "toupper", "close",
    "fflush", "system", "mktime", "strftime", "systime", "and", "compl", "lshift", "or", "rshift", "xor", "isarray",
    "typeof", "mkbool", "bindtextdomain", "dcgettext", "dcngettext", "BEGIN", "BEGINFILE", "END", "ENDFILE", "break",
    "case", "continue", "default", "delete", "do", "else", "exit", "for", "func", "function", "getline", "if", "in",
    "next", "nextfile", "print", "printf", "return", "switch", "while",
}



def awk_variables(sources: HostSources) -> dict[str, list[str]]:
    """The variables the hosts' awk programs set (`-v name=...` and assignments in the program)."""
    names: dict[str, list[str]] = {}
    for command in all_commands(sources)[0]:
        if command.words[0] != "awk":
            continue
        words, program = list(command.words[1:]), None
        while words:
            word = words.pop(0)
            if word in ("-v", "-F", "-f"):
                value = words.pop(0)
                if word == "-v":
                    names.setdefault(value.split("=", 1)[0], []).append(command.where)
            elif word.startswith("-v"):
                names.setdefault(word[2:].split("=", 1)[0], []).append(command.where)
            elif not word.startswith("-"):
                program = word
                break
        code = re.sub(r'"(\\.|[^"\\])*"', '""', program or "")
        for name in re.findall(r"(?<![\w$])([A-Za-z_]\w*)\s*(?:\[[^]]*\])?\s*[-+*/%^]?=(?!=)", code):
            names.setdefault(name, []).append(command.where)
    return names


def test_the_awk_variable_reader_sees_options_and_assignments():
    script = b"awk -F, -v or=1 -vmax=2 '{ n = 1; a[$1] += 2; if (n == 1) print \"k = 3\" }'\n"
    sample = HostSources("", {SCRIPTS_DIR + "x": script}, {})
    assert set(awk_variables(sample)) == {"or", "max", "n", "a"}


def test_no_awk_variable_of_the_scripts_is_a_gawk_builtin(sources):
    clashes = {name: where for name, where in awk_variables(sources).items() if name in GAWK_RESERVED}
    assert not clashes, f"gawk (AL2023's awk) refuses these variable names: {clashes}"

JUDGE_CASES = [(9, 9, 5, 90, 0, 5), (10, 1, 5, 90, 0, 5), (20, 4, 5, 180, 36, 5), (20, 9, 5, 180, 36, 5),
               (10, 0, 259, 90, 0, 9), (10, 0, 360, 90, 0, 9), (0, 0, 0, 0, 0, 0), (1000, 333, 17, 9000, 3, 12)]


def awk_outputs(awk: str, directory: Path, stat: str) -> list[str]:
    """canary_judge and the show stat readers (proxy_slot, proxy_slot_counters) with `awk` as awk."""
    bin_dir = directory / Path(awk).name
    bin_dir.mkdir()
    (bin_dir / "awk").symlink_to(awk)
    (directory / "stat.csv").write_text(stat)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CANARY_MIN_REQUESTS": "10", "CANARY_MAX_ERROR_PERCENT": "5",
           "CANARY_MAX_ADDED_MS": "250"}
    script = f'. "{COMMON}"; proxy_command() {{ cat "{directory / "stat.csv"}"; }}\n'
    script += "".join(f"canary_judge {' '.join(map(str, case))}\n" for case in JUDGE_CASES)
    script += "proxy_slot; echo; proxy_slot_counters\n"
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True)
    return run.stdout.splitlines()


def test_the_scripts_awk_programs_answer_alike_under_mawk_and_gawk(host_proxy, tmp_path):
    implementations = {name: shutil.which(name) for name in ("mawk", "gawk")}
    missing = [name for name, path in implementations.items() if path is None]
    if missing:
        pytest.skip(f"needs both the box's awk (mawk) and AL2023's (gawk); {', '.join(missing)} not installed")
    host_proxy.start()
    host_proxy.shell("proxy_command 'set server slots/b state ready; set server slots/a state maint'")
    stat = host_proxy.shell("proxy_command 'show stat'").stdout
    outputs = {name: awk_outputs(path, tmp_path, stat) for name, path in implementations.items()}
    assert outputs["mawk"] == outputs["gawk"]
    assert outputs["gawk"][-3:] == ["b", "a 0 0 0", "b 0 0 0"]
