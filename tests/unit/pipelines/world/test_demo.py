"""The demo's clock: elapsed time and an estimate of the time left, said as each stage starts."""

from skedit.pipelines.world.demo import STAGE_SECONDS, StageClock, clock


def test_clock_reads_minutes_and_seconds():
    assert clock(42.4) == "42 s"
    assert clock(65) == "1 min 05 s"


def test_stage_clock_scales_the_typical_times_by_the_pace_so_far():
    said, now = [], [100.0]
    at = StageClock(50, start=100.0, say=said.append, now=lambda: now[0])
    total, world = sum(STAGE_SECONDS.values()), STAGE_SECONDS["world"]
    at("world")
    assert said[-1] == f"demo: 0 s so far, about {clock(total)} to go"
    now[0] += 2 * world  # the world stage took twice its typical time here
    at("agents")
    assert said[-1] == f"demo: {clock(2 * world)} so far, about {clock(2 * (total - world))} to go"


def test_stage_clock_scales_with_the_number_of_edits():
    said = []
    StageClock(100, start=0.0, say=said.append, now=lambda: 0.0)("world")
    assert said[-1].endswith(f"about {clock(2 * sum(STAGE_SECONDS.values()))} to go")
