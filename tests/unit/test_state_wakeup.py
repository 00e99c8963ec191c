"""QueueState.next_wakeup ignores leases and delays that no longer exist."""

from __future__ import annotations

from stemlab.core.clock import from_epoch
from stemlab.core.envelope import Envelope
from stemlab.core.state import QueueState


def test_acked_leases_do_not_wake_anyone() -> None:
    state = QueueState(10.0)
    for i in range(3):
        state.publish(Envelope(name="t", id=f"t{i}"), 0.0)
    leases = state.claim(["default"], "c", 0.0, 3)
    assert state.next_wakeup() == 10.0
    state.ack(leases[0].token, 1.0)
    state.ack(leases[1].token, 1.0)
    assert state.next_wakeup() == 10.0  # the third lease is still live
    state.ack(leases[2].token, 1.0)
    assert state.next_wakeup() is None


def test_an_extended_lease_wakes_at_its_new_expiry() -> None:
    state = QueueState(10.0)
    state.publish(Envelope(name="t"), 0.0)
    (lease,) = state.claim(["default"], "c", 0.0, 1)
    state.extend(lease.token, 5.0, 20.0)
    assert state.next_wakeup() == 25.0


def test_delays_and_purges() -> None:
    state = QueueState(10.0)
    state.publish(Envelope(name="t", not_before=from_epoch(100.0)), 0.0)
    state.publish(Envelope(name="t", not_before=from_epoch(50.0), queue="other"), 0.0)
    assert state.next_wakeup() == 50.0
    state.purge("other", 1.0)
    assert state.next_wakeup() == 100.0
    state.tick(100.0)
    assert state.next_wakeup() is None
    (lease,) = state.claim(["default"], "c", 100.0, 1)
    assert state.next_wakeup() == 110.0
    assert lease.delivery_count == 1
