"""Dead-letter pages filtered by system reach every dead letter of that system, however many
dead letters of other systems lie between them (the filter scans a bounded window)."""

from __future__ import annotations

import time

from gateway.dead_letters import DeadLetters
from gateway.store.base import Attempt, NewJob, Store


async def _dead(store: Store, kind: str, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        job, _ = await store.jobs.enqueue(NewJob(kind, {}, ordering_key=f"{tag}-{i}"))
        leased = await store.jobs.lease("t", visibility=60, now=time.time())
        assert leased is not None and leased.id == job.id
        assert await store.jobs.dead_letter(
            job.id, "t", now=time.time(), attempt=Attempt(at=time.time(), error="refused")
        )
        ids.append(job.id)
    return ids


async def _all_pages(
    dead: DeadLetters, *, system: str | None, limit: int, scan_limit: int
) -> tuple[list[str], int]:
    seen: list[str] = []
    before: str | None = None
    pages = 0
    while True:
        page = await dead.page(system=system, limit=limit, before_id=before, scan_limit=scan_limit)
        pages += 1
        assert len(page.items) <= limit
        seen.extend(d.job.id for d in page.items)
        if page.next_before is None:
            return seen, pages
        assert pages < 100, "paging never ends"
        before = page.next_before


async def test_a_system_with_few_dead_letters_among_many_is_reached_by_paging(
    store: Store,
) -> None:
    # oldest first: 3 of population_db, then 25 of national_portal, then 2 of population_db
    old = await _dead(store, "population_db.verify", 3, "old")
    await _dead(store, "national_portal.sync_dossier", 25, "np")
    new = await _dead(store, "population_db.verify", 2, "new")
    dead = DeadLetters(store, None)

    first = await dead.page(system="population_db", limit=4, scan_limit=10)
    # the window (10) ends before the page is full: a short page that still says where to go on
    assert [d.job.id for d in first.items] == new[::-1]
    assert first.next_before is not None

    seen, _ = await _all_pages(dead, system="population_db", limit=4, scan_limit=10)
    assert seen == new[::-1] + old[::-1], "every dead letter of the system, newest first, once"


async def test_a_full_page_goes_on_after_its_last_item_not_after_the_scanned_batch(
    store: Store,
) -> None:
    # a batch holds more matches than the page needs: none of them may be skipped
    ids = await _dead(store, "population_db.verify", 7, "p")
    dead = DeadLetters(store, None)
    first = await dead.page(system="population_db", limit=3, scan_limit=10)
    assert [d.job.id for d in first.items] == ids[::-1][:3]
    assert first.next_before == ids[::-1][2]
    seen, pages = await _all_pages(dead, system="population_db", limit=3, scan_limit=10)
    assert seen == ids[::-1]
    assert pages == 3
    # without a system filter too, and the last page says so
    unfiltered, _ = await _all_pages(dead, system=None, limit=5, scan_limit=10)
    assert unfiltered == ids[::-1]
    last = await dead.page(system="national_portal", limit=3, scan_limit=100)
    assert (last.items, last.next_before) == ([], None)
