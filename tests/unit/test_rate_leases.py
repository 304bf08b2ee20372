"""The token rate limits' leases (app/adapters/throttle.Leases): the hit numbers one
process holds, handed out in order, within their window, in batches sized to the limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.adapters.throttle import Leases

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=60)


def test_a_small_limit_counts_every_request_in_the_database() -> None:
    leases = Leases()
    assert leases.size(None, "k", 3, NOW, WINDOW) == 1
    assert leases.size(None, "k", 127, NOW, WINDOW) == 1
    assert leases.size(None, "k", 128, NOW, WINDOW) == 2
    assert leases.size(None, "k", 10**9, NOW, WINDOW) == Leases.BATCH


def test_numbers_held_are_handed_out_in_order_then_none() -> None:
    leases = Leases()
    assert leases.take(None, "k", NOW, WINDOW) is None
    leases.add(None, "k", NOW, 2, 4, NOW, WINDOW)  # the batch 1..4; 1 went to its request
    assert [leases.take(None, "k", NOW, WINDOW) for _ in range(4)] == [
        (2, NOW),
        (3, NOW),
        (4, NOW),
        None,
    ]


def test_two_batches_are_used_one_after_the_other() -> None:
    leases = Leases()
    leases.add(None, "k", NOW, 2, 2, NOW, WINDOW)
    leases.add(None, "k", NOW, 6, 7, NOW, WINDOW)  # another process got 3..4 in between
    taken = [leases.take(None, "k", NOW, WINDOW) for _ in range(4)]
    assert taken == [(2, NOW), (6, NOW), (7, NOW), None]


def test_numbers_of_an_ended_window_are_not_used() -> None:
    leases = Leases()
    leases.add(None, "k", NOW, 2, 32, NOW, WINDOW)
    assert leases.take(None, "k", NOW + WINDOW, WINDOW) is None
    assert leases.size(None, "k", 10**9, NOW + WINDOW, WINDOW) == Leases.BATCH


def test_near_the_limit_one_number_at_a_time() -> None:
    leases = Leases()
    limit = 64 * 8  # batches of 8
    leases.add(None, "k", NOW, 500, 505, NOW, WINDOW)
    assert leases.size(None, "k", limit, NOW, WINDOW) == 1  # 505 + 8 > 512
    leases.add(None, "k", NOW, 2, 9, NOW, WINDOW)
    assert leases.size(None, "k", limit, NOW, WINDOW) == 8


def test_keys_and_projects_hold_their_own_numbers() -> None:
    leases = Leases()
    leases.add(None, "a", NOW, 2, 3, NOW, WINDOW)
    assert leases.take(None, "b", NOW, WINDOW) is None
    assert leases.take("acme", "a", NOW, WINDOW) is None
    assert leases.take(None, "a", NOW, WINDOW) == (2, NOW)


def test_ended_windows_are_swept_once_many_keys_are_held() -> None:
    leases = Leases()
    for i in range(Leases.SWEEP_AT):
        leases.add(None, f"ip:{i}", NOW, 2, 3, NOW, WINDOW)
    later = NOW + WINDOW
    leases.add(None, "fresh", later, 2, 3, later, WINDOW)
    assert leases.take(None, "fresh", later, WINDOW) == (2, later)
    assert len(leases._held) == 1
