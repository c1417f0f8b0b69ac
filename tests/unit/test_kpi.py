"""KPIs on hand-built step sequences: each expected value is worked out from the definition."""

from __future__ import annotations

import math

import pytest
from scipy import stats  # type: ignore[import-untyped]

from twinkg.ontology.errors import InvalidInputError
from twinkg.sim.kpi import (
    KPI_NAMES,
    ActionApplied,
    ActionRefused,
    Decision,
    EnvelopeExcursion,
    Failure,
    KpiAccumulator,
    KpiEvent,
    KpiResult,
    MaintenanceDone,
    Trip,
    summarize,
)

H = 3600.0


def _tep_run(stop_feeding_at_h: float | None = None) -> KpiAccumulator:
    """10 h in half-hour steps: running at 20 m³/h and 100 $/h for 8 h, then tripped (0 m³/h,
    50 $/h)."""
    acc = KpiAccumulator("tep", horizon_s=10 * H)
    t = 0.0
    while t < 10 * H:
        if stop_feeding_at_h is not None and t >= stop_feeding_at_h * H:
            break
        running = t < 8 * H
        outputs = {
            "plant:running": 1.0 if running else 0.0,
            "plant:throughput": 20.0 if running else 0.0,
            "plant:cost_per_h": 100.0 if running else 50.0,
        }
        acc.step(t, 0.5 * H, outputs, {})
        t += 0.5 * H
    acc.record(Trip(8 * H, "stripper level low"))
    return acc


def test_tep_trip_two_hours_down_out_of_ten() -> None:
    result = _tep_run().result()
    assert result.availability == pytest.approx(0.8)  # 1 - 2/10
    assert result.unplanned_downtime_h == pytest.approx(2.0)
    assert result.planned_downtime_h == 0.0
    assert result.trips == 1
    assert result.throughput == pytest.approx(16.0)  # (8 * 20 + 2 * 0) / 10
    assert result.energy_per_unit == pytest.approx(90.0)  # (8 * 100 + 2 * 50) / 10
    assert result.observed_h == pytest.approx(10.0)
    assert result.units["throughput"] == "m3/h"
    assert result.units["energy_per_unit"] == "USD/h"


def test_a_tripped_plant_is_held_down_to_the_horizon() -> None:
    held = _tep_run(stop_feeding_at_h=8.5).result()  # one tripped step fed, then nothing
    assert held.values() == pytest.approx(_tep_run().result().values())
    partial = _tep_run(stop_feeding_at_h=8.5).result(partial=True)
    assert partial.partial
    assert partial.observed_h == pytest.approx(8.5)
    assert partial.availability == pytest.approx(8.0 / 8.5)
    assert partial.unplanned_downtime_h == pytest.approx(0.5)


def test_water_availability_is_the_capacity_share_out_of_service() -> None:
    # p1 carries 2/3 of the duty capacity, p2 1/3; p3 is a standby (not in the capacity).
    acc = KpiAccumulator("epanet", horizon_s=10 * H, capacity={"p1": 2.0, "p2": 1.0})
    for hour in range(10):
        downtime: dict[str, str] = {}
        if hour in (2, 3):
            downtime["p2"] = "unplanned"  # failed, awaiting repair
        if hour == 5:
            downtime["p1"] = "planned"  # preventive maintenance
        if hour in (6, 7, 8):
            downtime["p3"] = "unplanned"  # the standby: no loss of duty capacity
        outputs = {
            "plant:demand_required": 1.0,  # m³/s
            "plant:demand_served": 0.5 if hour in (2, 3) else 1.0,
            "plant:power": 360.0,  # kW
        }
        acc.step(hour * H, H, outputs, downtime)
    result = acc.result()
    unplanned = 2 * (1 / 3)  # two hours at a third of the capacity
    planned = 1 * (2 / 3)
    assert result.unplanned_downtime_h == pytest.approx(unplanned)
    assert result.planned_downtime_h == pytest.approx(planned)
    assert result.availability == pytest.approx(1 - (unplanned + planned) / 10)
    served_m3 = (8 * 1.0 + 2 * 0.5) * H
    assert result.throughput == pytest.approx(served_m3 / (10 * H))
    assert result.energy_per_unit == pytest.approx(360.0 * 10 / served_m3)  # kWh per m³
    assert result.asset_downtime_h == pytest.approx({"p1": 1.0, "p2": 2.0, "p3": 3.0})
    assert result.units["throughput"] == "1"
    assert result.units["energy_per_unit"] == "kW.h/m3"


def test_a_whole_plant_stop_counts_fully_and_keeps_its_class() -> None:
    acc = KpiAccumulator("epanet", horizon_s=4 * H, capacity={"p1": 1.0, "p2": 1.0})
    acc.step(0, H, {"plant:running": 1.0}, {})
    acc.step(H, H, {"plant:running": 1.0}, {"plant": "planned"})
    acc.step(2 * H, H, {"plant:running": 0.0}, {})  # down with no reason given: unplanned
    acc.step(3 * H, H, {"plant:running": 1.0}, {"p1": "unplanned", "p2": "unplanned"})
    result = acc.result()
    assert result.planned_downtime_h == pytest.approx(1.0)
    assert result.unplanned_downtime_h == pytest.approx(2.0)
    assert result.availability == pytest.approx(1 - 3 / 4)
    assert math.isnan(result.throughput)  # no demand outputs at all


def test_the_window_starts_after_the_warmup() -> None:
    acc = KpiAccumulator("tep", horizon_s=6 * H, start_s=2 * H)
    acc.step(0, 1.5 * H, {"plant:running": 0.0, "plant:throughput": 0.0}, {})  # ignored
    # straddles the start: only its last half hour counts
    acc.step(1.5 * H, 1.0 * H, {"plant:running": 0.0, "plant:throughput": 0.0}, {})
    acc.step(2.5 * H, 3.5 * H, {"plant:running": 1.0, "plant:throughput": 10.0}, {})
    acc.record(Decision(1.0 * H))  # before the window
    acc.record(Decision(3.0 * H))
    result = acc.result()
    assert result.observed_h == pytest.approx(4.0)
    assert result.unplanned_downtime_h == pytest.approx(0.5)
    assert result.availability == pytest.approx(1 - 0.5 / 4)
    assert result.throughput == pytest.approx(3.5 * 10 / 4)
    assert result.decisions == 1


def test_envelope_excursions_are_the_union_over_outputs() -> None:
    envelopes = {"tank:1:level": (1.0, 5.0), "node:7:pressure": (20.0, None)}
    acc = KpiAccumulator("epanet", horizon_s=6 * H, envelopes=envelopes)
    levels = [3.0, 5.5, 6.0, 3.0, math.nan, 0.5]  # out in hours 1, 2, 5; NaN unknown
    pressures = [25.0, 25.0, 10.0, 10.0, 25.0, 25.0]  # out in hours 2, 3
    for hour, (level, pressure) in enumerate(zip(levels, pressures, strict=True)):
        acc.step(hour * H, H, {"tank:1:level": level, "node:7:pressure": pressure}, {})
    acc.record(EnvelopeExcursion(3.5 * H, 1.0 * H, "pump:9:vibration"))  # 3.5-4.5 h
    result = acc.result()
    # hours 1, 2, 3 (level or pressure), 3.5-4.5 (recorded), 5 → [1, 4.5) ∪ [5, 6) = 4.5 h
    assert result.envelope_excursion_h == pytest.approx(4.5)
    assert result.excursion_h_by_output == pytest.approx(
        {"tank:1:level": 3.0, "node:7:pressure": 2.0, "pump:9:vibration": 1.0}
    )


def test_events_count() -> None:
    acc = KpiAccumulator("epanet", horizon_s=10 * H)
    acc.step(0, 10 * H, {"plant:running": 1.0}, {})
    events: list[KpiEvent] = [
        Failure(H, "p1"),
        MaintenanceDone(2 * H, "p1", 8.0, 4720.0, planned=False),
        MaintenanceDone(3 * H, "p2", 2.0, 680.0, planned=True),
        ActionApplied(H, "stop", "p1"),
        ActionApplied(H, "set_speed", "p2", unsafe=True),
        ActionRefused(H, "set_speed", "p2"),
        ActionRefused(2 * H, "open", "v1"),
        Decision(H),
        Decision(2 * H),
        Decision(3 * H),
    ]
    for event in events:
        acc.record(event)
    result = acc.result()
    assert result.failures == 1
    assert result.maintenance_actions == 2
    assert result.maintenance_cost == pytest.approx(4720.0 + 680.0)
    assert result.applied_actions == 2
    assert result.unsafe_applied_actions == 1
    assert result.refused_actions == 2
    assert result.decisions == 3
    assert result.trips == 0


def test_timeline_per_hour() -> None:
    result = _tep_run().result()
    timeline = result.timeline
    assert timeline.t_h == pytest.approx(tuple(float(h) for h in range(1, 11)))
    # cumulative availability after hour 9: 8 up of 9; after 10: 8 of 10
    assert timeline.availability[7] == pytest.approx(1.0)
    assert timeline.availability[8] == pytest.approx(8 / 9)
    assert timeline.availability[9] == pytest.approx(0.8)
    assert timeline.unplanned_downtime_h == pytest.approx((0.0,) * 8 + (1.0, 2.0))
    assert timeline.throughput == pytest.approx((20.0,) * 8 + (0.0, 0.0))
    assert timeline.energy_per_unit == pytest.approx((100.0,) * 8 + (50.0, 50.0))


def test_steps_split_across_timeline_bins() -> None:
    acc = KpiAccumulator("tep", horizon_s=2 * H)
    acc.step(0, 1.5 * H, {"plant:running": 1.0, "plant:throughput": 10.0}, {})
    acc.step(1.5 * H, 0.5 * H, {"plant:running": 0.0, "plant:throughput": 0.0}, {})
    timeline = acc.result().timeline
    assert timeline.throughput == pytest.approx((10.0, 5.0))
    assert timeline.unplanned_downtime_h == pytest.approx((0.0, 0.5))


def test_bad_input_is_refused() -> None:
    acc = KpiAccumulator("tep", horizon_s=H)
    with pytest.raises(InvalidInputError):
        acc.step(0, H, {}, {"p1": "broken"})
    with pytest.raises(InvalidInputError):
        acc.step(0, 0, {}, {})
    with pytest.raises(InvalidInputError):
        KpiAccumulator("aspen", horizon_s=H)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        KpiAccumulator("tep", horizon_s=H, start_s=2 * H)
    with pytest.raises(InvalidInputError):
        summarize([])


# --------------------------------------------------------------------------------------------
# Across seeds


def _result(availability: float, downtime: float) -> KpiResult:
    acc = KpiAccumulator("tep", horizon_s=10 * H)
    acc.step(0, (1 - availability) * 10 * H, {"plant:running": 0.0, "plant:throughput": 0.0}, {})
    acc.step((1 - availability) * 10 * H, availability * 10 * H, {"plant:throughput": 1.0}, {})
    result = acc.result()
    assert result.unplanned_downtime_h == pytest.approx(downtime)
    return result


def test_summarize_uses_student_t() -> None:
    downtimes = [1.0, 2.0, 3.0, 4.0, 5.0]
    results = [_result(1 - d / 10, d) for d in downtimes]
    mean, low, high = summarize(results)["unplanned_downtime_h"]
    # mean 3, sample sd sqrt(2.5), t(0.975, 4) = 2.7764451051977987
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert (mean, low, high) == pytest.approx((3.0, 3.0 - half, 3.0 + half))
    scipy_low, scipy_high = stats.t.interval(0.95, 4, loc=3.0, scale=stats.sem(downtimes, ddof=1))
    assert (low, high) == pytest.approx((scipy_low, scipy_high))
    assert set(summarize(results)) == set(KPI_NAMES)


def test_summarize_one_seed_and_nans() -> None:
    one = _result(0.7, 3.0)
    assert summarize([one])["availability"] == pytest.approx((0.7, 0.7, 0.7))
    assert math.isnan(summarize([one])["energy_per_unit"][0])  # no cost output: NaN
    same = summarize([one, one, one])["unplanned_downtime_h"]
    assert same == pytest.approx((3.0, 3.0, 3.0))  # no spread, no width
