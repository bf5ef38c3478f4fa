"""What every verb of the release tool shares, below the flows: the context a verb runs in (arguments,
adapter, streams, clocks), how a verb stops (`Abort`, signals), the one-write ledger record, the
confirmation prompt and the text of an AWS error.

`release.flows.lease`, `release.flows.flow` and `release.flows.schema_flow` import this module; it imports none of them.
"""
from __future__ import annotations

import errno
import signal
import threading
from datetime import datetime, timezone
from typing import Callable, TextIO

from botocore.exceptions import ClientError

from config import StageConfig
from release.pure import decisions as d
from release.adapters.aws import Aws
from release.adapters.ledger import Ledger


class Abort(Exception):
    """Stop the verb with an exit code and a message that says what to do; `extra` joins the --json document."""

    def __init__(self, exit_code: int, message: str, hint: str = "", extra: dict | None = None):
        super().__init__(message)
        self.exit_code, self.message, self.hint, self.extra = exit_code, message, hint, extra or {}


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt, so every `finally` runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class WaitTimedOut(Exception):
    """The user's --timeout passed while CloudFormation was still updating."""



def signal_of(error: BaseException) -> int | None:
    if isinstance(error, Interrupted):
        return error.signum
    if isinstance(error, KeyboardInterrupt):
        return signal.SIGINT
    return None


# While the outcome is being read back and recorded, a second Ctrl-C must not cut that short.
_shield = threading.Event()
# While a write whose answer decides what happened is in flight (UpdateStack), a signal waits for it.
_defer = threading.Event()
_deferred: list[int] = []


def raise_on_signal(signum, _frame) -> None:
    if _shield.is_set():
        return
    if _defer.is_set():
        _deferred.append(signum)
        return
    raise Interrupted(signum)


class Deferred:
    """A signal that arrives inside this block is raised when the block ends, not in the middle of it: a
    call cut off mid-flight leaves its effect unknown (UpdateStack may land seconds later), while its
    answer says whether it was accepted. The block's own length bounds the delay (a call's timeouts)."""

    def __enter__(self):
        _deferred.clear()
        _defer.set()

    def __exit__(self, exc_type, *_):
        _defer.clear()
        pending = list(_deferred)
        _deferred.clear()
        if pending and exc_type is None:
            raise Interrupted(pending[0])


class Shielded:
    def __enter__(self):
        _shield.set()

    def __exit__(self, *_):
        _shield.clear()



class Context:
    def __init__(self, args, *, stage: StageConfig, aws: Aws, stdin: TextIO, stdout: TextIO, stderr: TextIO,
                 clock: Callable[[], float], monotonic: Callable[[], float], sleep: Callable[[float], None]):
        self.args, self.aws, self.stage = args, aws, stage
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.clock, self.monotonic, self.sleep = clock, monotonic, sleep
        self.json = args.json
        self.stdout_closed = False

    def say(self, text: str = "") -> None:
        """Human output; in --json mode it goes to stderr so stdout stays one JSON document.

        A closed stdout (`liftoff status | head -2`) ends the printing, never the release."""
        stream = self.stderr if self.json else self.stdout
        if stream is self.stdout and self.stdout_closed:
            return
        try:
            print(text, file=stream, flush=True)
        except (BrokenPipeError, ValueError):
            self.stdout_closed = True
        except OSError as error:
            if error.errno != errno.EPIPE:
                raise
            self.stdout_closed = True

    def now(self) -> int:
        return int(self.clock())

    def iso(self, epoch: float | None = None) -> str:
        moment = datetime.fromtimestamp(self.clock() if epoch is None else epoch, tz=timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # Names come from the stacks' outputs, never guessed from naming conventions.
    def service_stack(self) -> d.Stack:
        return self.aws.stack(self.stage.service_stack_name)

    def repository(self) -> str:
        return self.aws.output(self.stage.registry_stack_name, "RepositoryName")

    def ledger(self) -> Ledger:
        return self.aws.ledger(self.aws.output(self.stage.data_stack_name, "ReleaseLedgerTable"))



def record(ctx: Context, ledger: Ledger, *, gate, release_id, who, from_version, to_version, result, detail,
           digest="", forced=False) -> d.Entry:
    """A finished entry in one write: a refusal, a lock collision, a no-op."""
    now = ctx.iso()
    return ledger.record(d.Entry(release_id=release_id, gate=gate, from_version=from_version, to_version=to_version, who=who,
                                 started_at=now, digest=digest, result=result, finished_at=now, duration_seconds=0.0,
                                 forced=forced, detail=detail), ctx.stage.name)


def confirm(ctx: Context, question: str) -> None:
    if ctx.args.yes:
        return
    if not ctx.stdin.isatty():
        raise Abort(d.EXIT_USAGE, "refusing without confirmation: stdin is not a terminal; nothing changed",
                    "pass --yes to confirm non-interactively (pipelines)")
    print(f"{question} [y/N] ", end="", file=ctx.stderr, flush=True)
    if ctx.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Abort(d.EXIT_USAGE, "not confirmed; nothing changed")



def client_error_text(error: ClientError, *, caller: str = "") -> str:
    """AWS's code and message; a permission refusal as who may not call what on which resource (`caller` names the
    principal when AWS's message does not)."""
    info = error.response.get("Error", {})
    refused = d.denial(info.get("Code", ""), info.get("Message", ""), operation=error.operation_name or "the call", principal=caller)
    if refused is not None:
        return f"{refused.text()} ({info.get('Code')})"
    return f"{info.get('Code', 'Error')}: {info.get('Message', str(error))}"


def error_text(error: BaseException) -> str:
    return client_error_text(error) if isinstance(error, ClientError) else str(error)
