"""Timeline entries carry a translation key and its arguments for the dashboard, while their
English ``label`` (the API's) stays as it was."""

from __future__ import annotations

import string
import time

from gateway.ops.i18n import LANGUAGES, MESSAGES, translate
from gateway.store.base import Attempt, AuditRecord, NewJob, Store
from gateway.timeline import dossier_timeline

CODE = "000.00.01.H12-261128-0007"


async def test_job_and_operator_entries_have_keys_whose_english_is_the_label(
    store: Store,
) -> None:
    dead, _ = await store.jobs.enqueue(NewJob("portal.sync", {}, ordering_key=CODE))
    await store.jobs.enqueue(NewJob("portal.progress", {}, ordering_key=CODE))
    leased = await store.jobs.lease("w1", visibility=30, now=time.time())
    assert leased is not None and leased.id == dead.id
    assert await store.jobs.dead_letter(
        dead.id, "w1", now=time.time(), attempt=Attempt(at=time.time(), error="refused")
    )
    for operation, actor in (("dossier.accepted", "dossier-system"), ("dlq.replay", "ops-1")):
        await store.audit.append(
            AuditRecord(
                at=time.time(),
                direction="internal" if operation.startswith("dlq.") else "inbound",
                actor=actor,
                operation=operation,
                outcome="ok",
                dossier_code=CODE,
            )
        )
    entries = await dossier_timeline(store, CODE)
    labels = {e.label: e for e in entries}
    assert set(labels) == {
        "dossier.accepted",
        "replayed by an operator",
        "portal.sync queued",
        "portal.sync attempt failed",
        "portal.sync dead",
        "portal.progress queued",
    }
    # the systems' operation names are shown as they are
    assert labels["dossier.accepted"].label_key is None
    assert labels["replayed by an operator"].label_key == "tl_replayed"
    assert labels["portal.sync attempt failed"].label_key == "tl_job_attempt_failed"
    assert labels["portal.sync dead"].label_key == "tl_job_now_dead"
    for entry in entries:
        if entry.label_key is None:
            continue
        assert entry.label_key in MESSAGES, entry.label_key
        texts = {lang: translate(entry.label_key, lang) for lang in LANGUAGES}
        assert texts["en"].format(**entry.label_args) == entry.label
        assert texts["vi"].format(**entry.label_args) != entry.label, entry.label_key
        view = entry.as_dict()  # the API's form is unchanged
        assert view["label"] == entry.label
        assert "label_key" not in view


def test_every_job_state_a_timeline_names_is_translated() -> None:
    # _job_entries labels a job still queued, leased or dead with its state
    for state in ("queued", "leased", "dead"):
        entry = MESSAGES[f"tl_job_now_{state}"]
        for lang in LANGUAGES:
            fields = {f for _, f, _, _ in string.Formatter().parse(entry[lang]) if f}
            assert fields == {"kind"}, (state, lang)


async def test_a_replay_shows_when_it_happened_not_when_its_job_was_queued(
    store: Store,
) -> None:
    """The acceptance of a command is moved back to when its job was queued (it is audited just
    after); an operator's replay of that job names it too, but happened later: it stays put."""
    job, _ = await store.jobs.enqueue(NewJob("portal.sync", {}, ordering_key=CODE))
    leased = await store.jobs.lease("w1", visibility=30, now=time.time())
    assert leased is not None
    failed_at = time.time() + 1
    assert await store.jobs.dead_letter(
        job.id, "w1", now=failed_at, attempt=Attempt(at=failed_at, error="refused")
    )
    for at, direction, operation in (
        (job.created_at + 0.5, "inbound", "dossier.accepted"),
        (failed_at + 5, "internal", "dlq.replay"),
    ):
        await store.audit.append(
            AuditRecord(
                at=at,
                direction=direction,
                actor="x",
                operation=operation,
                outcome="ok",
                dossier_code=CODE,
                extra={"job_id": job.id},
            )
        )
    labels = [e.label for e in await dossier_timeline(store, CODE)]
    assert labels.index("dossier.accepted") < labels.index("portal.sync attempt failed")
    assert labels.index("portal.sync attempt failed") < labels.index("replayed by an operator")
