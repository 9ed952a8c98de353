"""The per-case sequencer on its own: who may run, who waits, who is woken."""

from __future__ import annotations

from fileops_daemon.service.sequencer import Admitted, CaseSequencer, Waiting, WaitReason


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestOnePlanPerCase:
    def test_a_second_plan_of_a_busy_case_waits_and_is_woken_when_the_first_is_answered(
        self,
    ) -> None:
        seq = CaseSequencer()
        first = seq.enter("case", "p1")
        assert isinstance(first, Admitted)
        second = seq.enter("case", "p2")
        assert second == Waiting("case", WaitReason.CASE_BUSY, "p1")
        woken: list[str] = []
        seq.park("case", lambda: woken.append("p2"))
        assert seq.leave(first, blocks=False) and not woken
        assert isinstance(seq.enter("case", "p2"), Admitted)

    def test_other_cases_are_not_held_up(self) -> None:
        seq = CaseSequencer()
        assert isinstance(seq.enter("a", "p1"), Admitted)
        assert isinstance(seq.enter("b", "p2"), Admitted)

    def test_the_same_plan_delivered_twice_waits_for_itself(self) -> None:
        seq = CaseSequencer()
        assert isinstance(seq.enter("case", "p1"), Admitted)
        assert seq.enter("case", "p1") == Waiting("case", WaitReason.CASE_BUSY, "p1")


class TestANackedPlanBlocksItsCase:
    def test_later_plans_wait_until_the_nacked_plan_is_answered(self) -> None:
        seq = CaseSequencer()
        first = seq.enter("case", "p1")
        assert isinstance(first, Admitted)
        seq.leave(first, blocks=True)
        assert seq.enter("case", "p2") == Waiting("case", WaitReason.CASE_BLOCKED, "p1")
        again = seq.enter("case", "p1")  # the redelivery of the nacked plan goes first
        assert isinstance(again, Admitted)
        seq.leave(again, blocks=False)
        assert isinstance(seq.enter("case", "p2"), Admitted)

    def test_a_plan_on_its_last_attempt_does_not_block(self) -> None:
        seq = CaseSequencer()
        first = seq.enter("case", "p1")
        assert isinstance(first, Admitted)
        seq.leave(first, blocks=False)  # dead-lettered: never comes back
        assert isinstance(seq.enter("case", "p2"), Admitted)

    def test_a_blocker_not_seen_for_block_seconds_is_dropped(self) -> None:
        clock = Clock()
        seq = CaseSequencer(block_seconds=900, clock=clock)
        first = seq.enter("case", "p1")
        assert isinstance(first, Admitted)
        seq.leave(first, blocks=True)
        clock.now = 899
        assert isinstance(seq.enter("case", "p2"), Waiting)
        clock.now = 901
        assert isinstance(seq.enter("case", "p2"), Admitted)

    def test_an_unparked_waiter_is_not_woken(self) -> None:
        seq = CaseSequencer()
        first = seq.enter("case", "p1")
        assert isinstance(first, Admitted)
        woken: list[int] = []

        def wake() -> None:
            woken.append(1)

        seq.park("case", wake)
        assert seq.unpark("case", wake)
        for waiter in seq.leave(first, blocks=False):
            waiter()
        assert woken == []
