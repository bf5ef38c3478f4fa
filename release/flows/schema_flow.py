"""Schema-aware releases, in order, with the stage's lock held: `liftoff migrate`, the schema gate of
`activate`/`rollback`, and the schema marks of `liftoff versions`.

Decisions are `release.pure.schema`'s; AWS calls go through the adapter (`release.adapters.schema_aws`, mixed into
`release.adapters.aws.Aws`); the lock, the lease and the ledger entries are `release.flows.flow`'s.

`liftoff migrate --stage S [--version X]`:
  1. the lock is taken (a live holder: refused and recorded, as for every release verb);
  2. under it, fresh reads: the stack (active, staged), the ledger, the image's labels, the stage's
     recorded schema state; an image the schema has left behind is refused;
  3. which contract steps may run: `schema.holders` (active, staged, warm, rollback window) and
     `schema.decide_contracts`; the plan says which step is held, by whom, and when they leave;
  4. the entry is written (`migrate`, in_progress), the one-off runs (ecs: a task; ec2: one host through
     SSM Run Command) and is waited for, its output shown;
  5. the `schema state` line it printed is recorded as the stage's schema state, the entry completed.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from release.pure import decisions as d
from release.pure import schema as s
from release.adapters.aws import MissingOutput
from release.adapters.ledger import Ledger, new_release_id
from release.adapters.schema_aws import LabelsUnreadable, OneOffError
from release.flows.context import Abort, Context, Shielded, error_text, record
from release.flows.context import confirm as ask
from release.flows.lease import LockCollision, acquire, close_orphan

GATE = "migrate"


class SchemaFacts:
    """What the schema decisions need, read once per verb (labels cached per tag)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.table = ctx.aws.output(ctx.stage.data_stack_name, "ReleaseLedgerTable")
        self.repository = ctx.repository()
        self.state = ctx.aws.read_schema_state(self.table)
        self._images: dict[str, s.ImageSchema | None] = {}

    def image(self, tag: str) -> s.ImageSchema | None:
        if tag not in self._images:
            self._images[tag] = s.parse_labels(tag, self.ctx.aws.image_labels(self.repository, tag))
        return self._images[tag]

    def release_of(self, tag: str, present: set[str]) -> str | None:
        if tag in present:
            try:
                image = self.image(tag)
            except (s.LabelError, LabelsUnreadable):
                image = None  # unknown: holds every contract step, the safe side
            if image is not None:
                return image.release
        return None  # unknown: it holds every contract step


def run_migrate(ctx: Context) -> dict:
    args = ctx.args
    if args.version is not None:
        refusal = d.check_tag(args.version)
        if refusal:
            raise Abort(refusal.exit_code, refusal.message, refusal.hint)
    ledger = ctx.ledger()
    who = ctx.aws.caller_arn()
    release_id = new_release_id()
    base: dict[str, Any] = {"gate": GATE, "release_id": release_id, "who": who}
    try:
        lease, taken_over = acquire(ctx, ledger, gate=GATE, version=args.version or "(staged)", who=who, release_id=release_id)
    except LockCollision as collision:
        refusal = d.lock_refusal(collision.lock, collision.why)
        recorded = record(ctx, ledger, gate=GATE, release_id=release_id, who=who, from_version="", to_version=args.version or "",
                           result=d.RESULT_REFUSED, detail=f"lock held: {refusal.message}")
        raise Abort(refusal.exit_code, refusal.message, refusal.hint, {**base, "result": d.RESULT_REFUSED, "seq": recorded.seq}) from None
    lease.start()
    try:
        if taken_over is not None:
            close_orphan(ctx, ledger, taken_over, f"its run stopped without finishing (taken over by release {release_id})")
        stack = ctx.service_stack()
        active, staged = stack.parameters.get(d.IMAGE_TAG), stack.parameters.get(d.STAGED_IMAGE_TAG)
        tag = s.migrate_target(args.version, active=active, staged=staged)
        if not tag:
            raise Abort(d.EXIT_USAGE, f"{stack.name} has no active or staged version to migrate for", "name one with --version")
        outcome = migrate_under_lock(ctx, ledger, lease, who=who, release_id=release_id, stack=stack, tag=tag,
                                     entries=ledger.entries(), confirm=True)
        return {**base, **outcome}
    finally:
        with Shielded():
            lease.end()


def contract_plan(ctx: Context, facts: SchemaFacts, image: s.ImageSchema, *, active: str | None, staged: str | None,
                  entries: list[d.Entry], present: set[str]) -> s.ContractPlan:
    """Which of `image`'s contract steps may run on the stage now, and who holds the first one that may not."""
    holding = s.holders(active=active, staged=staged, entries=entries, now=ctx.clock(), window=ctx.stage.rollback_window,
                        bake_seconds=ctx.stage.bake_seconds)
    releases = {h.version: facts.release_of(h.version, present) for h in holding}
    return s.decide_contracts(image, facts.state, holding, releases)


def plan_json(plan: s.ContractPlan) -> dict:
    return {"allowed": list(plan.allowed), "held": plan.held, "held_after_retiring": plan.held_after_retiring,
            "held_by": [asdict(h) for h in plan.held_by]}


def migrate_under_lock(ctx: Context, ledger: Ledger, lease, *, who: str, release_id: str, stack: d.Stack, tag: str,
                       entries: list[d.Entry], confirm: bool, facts: SchemaFacts | None = None) -> dict:
    """Run `tag`'s migrations once as a one-off, with the contract steps the stage allows; record the result."""
    lease.doing(f"checking the schema for {tag} (fresh reads under the lock)")
    facts = facts or SchemaFacts(ctx)
    active, staged = stack.parameters.get(d.IMAGE_TAG), stack.parameters.get(d.STAGED_IMAGE_TAG)

    def refused(decision: d.Decision) -> Abort:
        entry = record(ctx, ledger, gate=GATE, release_id=release_id, who=who, from_version="", to_version=tag,
                        result=d.RESULT_REFUSED, detail=decision.message)
        return Abort(decision.exit_code, decision.message, decision.hint,
                     {"gate": GATE, "to": tag, "result": d.RESULT_REFUSED, "seq": entry.seq})

    images = ctx.aws.images(facts.repository)
    missing = d.check_image(tag, images, d.released_versions(entries))
    if missing:
        raise refused(missing)
    try:
        image = facts.image(tag)
    except s.LabelError as error:
        raise refused(d.refuse(d.EXIT_REFUSED, str(error), "rebuild the image with pipeline/build.sh (it sets the labels)")) from None
    except LabelsUnreadable as error:
        raise refused(d.refuse(d.EXIT_AWS, str(error), "check the network and ecr:GetDownloadUrlForLayer, then run it again")) from None
    if image is None:
        raise refused(d.refuse(d.EXIT_REFUSED, f"{tag} declares no schema contract (no {s.LABEL_HEAD} label), so liftoff "
                                               "cannot tell what its migrations do to the stage",
                               "build it with pipeline/build.sh, which labels it from service/migrations"))
    verdict = s.fit(image, facts.state)
    if verdict.kind == s.FIT_LEFT_BEHIND:
        raise refused(d.refuse(d.EXIT_REFUSED, verdict.message, "migrate with a newer version (`liftoff versions` marks them)"))
    plan = contract_plan(ctx, facts, image, active=active, staged=staged, entries=entries, present=set(images))
    arguments = [part for step in plan.allowed for part in ("--allow-contract", step)]
    state_now = facts.state
    ctx.say(f"plan: migrate {ctx.stage.name}: run the migrations of {tag} (release {image.release}, ships up to {image.head}) "
            f"once, as a one-off on {stack.outputs.get('ComputeMode', ctx.stage.compute)}")
    ctx.say(f"  schema now: {('head ' + state_now.head) if state_now else 'not recorded yet'}"
            + (f"; contract steps applied: {', '.join(sorted(state_now.contracts))}" if state_now and state_now.contracts else ""))
    ctx.say(f"  {plan.describe()}")
    if confirm:
        lease.doing("waiting for confirmation")
        ask(ctx, f"migrate {ctx.stage.name} with {tag}'s migrations?")

    started = ctx.clock()
    digest = images[tag].digest
    entry = d.Entry(release_id=release_id, gate=GATE, from_version="", to_version=tag, who=who, started_at=ctx.iso(started),
                    digest=digest, detail=plan.describe(), seq=ledger.next_seq())
    lease.renew(activity=f"migrating {ctx.stage.name} with {tag}", entry=entry, version=tag)
    entry = ledger.start(entry, ctx.stage.name)
    result: dict[str, Any] = {"to": tag, "digest": digest, "seq": entry.seq, "plan": plan_json(plan)}

    def finish(outcome: str, detail: str) -> None:
        detail = "; ".join(part for part in (entry.detail, detail) if part)
        ledger.finish(entry, result=outcome, finished_at=ctx.iso(), duration_seconds=ctx.clock() - started, detail=detail)
        result.update(result=outcome, detail=detail)

    try:
        uri = ctx.aws.output(ctx.stage.registry_stack_name, "RepositoryUri")
        one = ctx.aws.run_one_off(stack.outputs, compute=stack.outputs.get("ComputeMode", ctx.stage.compute), image=f"{uri}:{tag}",
                                  tag=tag, arguments=arguments, timeout=ctx.args.timeout, poll=ctx.args.poll_interval,
                                  sleep=ctx.sleep, monotonic=ctx.monotonic, say=ctx.say)
    except (OneOffError, BotoCoreError, ClientError) as error:
        with Shielded():
            finish(d.RESULT_FAILED, f"the one-off could not run: {error}; nothing recorded as applied")
        raise Abort(d.EXIT_AWS, f"the one-off migrate could not run: {error}", "fix the cause and run `liftoff migrate` again",
                    result) from None
    except BaseException:
        with Shielded():
            finish(d.RESULT_INTERRUPTED, "stopped while the one-off ran; it may still be running: run `liftoff migrate` "
                                         "again to record the schema (applied steps are skipped)")
        raise
    for line in one.output.splitlines():
        ctx.say(f"  | {line}")
    result["where"], result["exit_status"] = one.where, one.exit_code
    parsed = s.parse_state_line(one.output)
    if one.exit_code == 0 and parsed is not None:
        new_state = s.SchemaState(applied=tuple(parsed.get("applied") or ()), contracts=dict(parsed.get("contracts") or {}),
                                  recorded_at=ctx.iso(), version=tag, release_id=release_id)
        ctx.aws.write_schema_state(facts.table, new_state)
        facts.state = new_state
        applied_now = parsed.get("applied_now") or []
        finish(d.RESULT_SUCCEEDED, f"applied: {', '.join(applied_now) or 'nothing new'}; schema head {new_state.head}"
               + (f"; contract steps applied: {', '.join(sorted(new_state.contracts))}" if new_state.contracts else "")
               + f" ({one.where})")
        ctx.say(f"migrate {tag} on {ctx.stage.name}: succeeded; schema head {new_state.head}"
                + (f"; {plan.held} held" if plan.held else "") + f" (release {release_id})")
        result["schema"] = {"applied": list(new_state.applied), "contracts": dict(new_state.contracts)}
        return result
    if one.exit_code is None:
        why = f"the one-off did not finish within {ctx.args.timeout:.0f} s ({one.where})"
    elif one.exit_code == 0:
        why = f"the one-off exited 0 but printed no `schema state` line ({one.where}); is {tag} a liftoff service image?"
    else:
        why = f"the one-off migrate exited {one.exit_code} ({one.where}): " + (
            "the schema has left this release behind" if one.exit_code == 4 else "a migration failed, see its output above")
    with Shielded():
        finish(d.RESULT_FAILED, why)
    raise Abort(d.EXIT_AWS, why, "fix the cause and run `liftoff migrate` again (applied steps are skipped)", result)


def check_switch(ctx: Context, ledger: Ledger, lease, *, who: str, stack: d.Stack, tag: str, entries: list[d.Entry]) -> d.Decision | None:
    """The schema gate of activate/rollback: None when `tag` may run on the stage's schema (after running its
    migrations first when `--migrate` asks and only expand steps are missing)."""
    facts = SchemaFacts(ctx)
    if facts.state is None:  # nothing to check against, so no label is read (stages from before `liftoff migrate`)
        ctx.say(f"schema: not checked: {ctx.stage.name} has no recorded schema state "
                f"(`liftoff migrate --stage {ctx.stage.name}` records it)")
        return None
    try:
        image = facts.image(tag)
    except s.LabelError as error:
        return d.refuse(d.EXIT_REFUSED, str(error), "rebuild the image with pipeline/build.sh (it sets the labels)")
    except LabelsUnreadable as error:
        return d.refuse(d.EXIT_AWS, f"{error}; the schema gate cannot tell whether {tag} runs on this schema",
                        "check the network and ecr:GetDownloadUrlForLayer, then run it again")
    verdict = s.fit(image, facts.state, tag=tag)
    if verdict.kind == s.FIT_UNKNOWN:
        ctx.say(f"schema: not checked: {verdict.message}")
        return None
    decision = s.decide_switch(tag, image, facts.state, stage=ctx.stage.name)
    if decision is not None and verdict.kind == s.FIT_NEEDS_MIGRATE and getattr(ctx.args, "migrate", False):
        ctx.say(f"schema: {verdict.message}; running its migrations first (--migrate)")
        migrate_under_lock(ctx, ledger, lease, who=who, release_id=new_release_id(), stack=stack, tag=tag, entries=entries,
                           confirm=True, facts=facts)
        decision = s.decide_switch(tag, image, facts.state, stage=ctx.stage.name)
    if decision is None:
        ctx.say(f"schema: {s.fit(image, facts.state, tag=tag).message}")
    return decision


def version_marks(ctx: Context, tags: list[str]) -> dict:
    """`liftoff versions`: the stage's schema state and, per image, whether it can run on it."""
    facts = SchemaFacts(ctx)
    fits = {}
    for tag in (tags if facts.state is not None else []):
        try:
            verdict = s.fit(facts.image(tag), facts.state, tag=tag)
        except (s.LabelError, LabelsUnreadable) as error:
            verdict = s.Fit(s.FIT_UNKNOWN, str(error))
        fits[tag] = {"fit": verdict.kind, "message": verdict.message, "steps": list(verdict.steps)}
    state = facts.state
    if state is None:
        ctx.say(f"schema of {ctx.stage.name}: not recorded yet (`liftoff migrate --stage {ctx.stage.name}` records it)")
    else:
        ctx.say(f"schema of {ctx.stage.name}: head {state.head}"
                + (f", contract steps applied: {state.contracts_text}" if state.contracts else "")
                + f" (recorded {state.recorded_at} by migrate of {state.version})")
        for tag in tags:
            ctx.say(f"  {tag:<12} {fits[tag]['fit'].upper():<14} {fits[tag]['message'] if fits[tag]['fit'] != s.FIT_OK else ''}".rstrip())
    return {"state": asdict(state) if state else None, "fit": fits}


def status(ctx: Context, stack: d.Stack, entries: list[d.Entry]) -> dict:
    """`liftoff status`: the stage's schema state, and what `liftoff migrate` would do now with the version it runs
    by default (the staged one): which contract steps may run, which is held and by which versions, until when.
    Read without the lock, like the rest of status; a read that fails is said, and status goes on."""
    indent = " " * 11
    try:
        facts = SchemaFacts(ctx)
    except (BotoCoreError, ClientError, MissingOutput) as error:
        ctx.say(f"  schema   could not be read: {error_text(error)}")
        return {"state": None, "error": error_text(error)}
    state = facts.state
    active, staged = stack.parameters.get(d.IMAGE_TAG), stack.parameters.get(d.STAGED_IMAGE_TAG)
    target = s.migrate_target(None, active=active, staged=staged)
    result: dict[str, Any] = {"state": asdict(state) if state else None, "migrate_version": target, "contracts": None}
    if state is None:
        ctx.say(f"  schema   not recorded yet (`liftoff migrate --stage {ctx.stage.name}` records it)")
        return result
    ctx.say(f"  schema   head {state.head}: {len(state.applied)} step(s) applied"
            + (f", contract steps applied: {state.contracts_text}" if state.contracts else "")
            + f" (recorded {state.recorded_at} by migrate of {state.version})")
    if not target:
        return result
    try:
        image = facts.image(target)
        present = set(ctx.aws.images(facts.repository))
    except (s.LabelError, LabelsUnreadable, BotoCoreError, ClientError) as error:
        ctx.say(f"{indent}migrate of {target} now: not known ({error_text(error)})")
        return result
    if image is None:
        ctx.say(f"{indent}migrate of {target} now: not known ({target} declares no schema contract)")
        return result
    plan = contract_plan(ctx, facts, image, active=active, staged=staged, entries=entries, present=present)
    result["contracts"] = plan_json(plan)
    ctx.say(f"{indent}migrate of {target} now: {plan.describe()}")
    return result
