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
