"""The demo day as a plan: the same seed gives the same day, and the day contains every business
scenario of SCENARIOS.md, every ingress format and the whole malformed burst."""

from __future__ import annotations

from datetime import date

from sinew.cli import demo
from sinew.contracts import CATALOGUE

DAY = date(2026, 3, 2)


def test_the_same_seed_plays_the_same_day():
    assert demo.plan_day(11, 600, day=DAY) == demo.plan_day(11, 600, day=DAY)
    assert demo.plan_day(11, 600, day=DAY) != demo.plan_day(12, 600, day=DAY)


def test_every_scenario_of_scenarios_md_and_every_format_occurs_at_every_size():
    for usages in (0, 30, 3000):
        kinds = demo.kinds_of(demo.plan_day(7, usages, day=DAY))
        missing = [kind for kind in demo.SCENARIO_KINDS if not kinds[kind]]
        assert missing == [], f"--usages {usages} lacks {missing}"
        numbered = {kind[1:3] for kind in kinds if kind[0] == "s" and kind[1:3].isdigit()}
        assert numbered == {f"{n:02d}" for n in range(1, 15)}


def test_the_routine_usage_volume_is_what_was_asked_for_split_over_the_three_sites():
    plan = demo.plan_day(7, 3001, day=DAY)
    routine = [
        step for phase in plan for step in phase.steps if getattr(step, "kinds", ()) in demo.ROUTINE
    ]
    assert len(routine) == 3001
    per_site = {site: sum(1 for s in routine if s.site == site) for site in demo.SITES}
    assert per_site == {"north": 1001, "south": 1000, "east": 1000}
    formats = demo.kinds_of(plan)
    assert formats["usage_json"] > formats["usage_hl7"] > formats["usage_fhir"] > 100


def test_outside_systems_publish_only_their_own_ingress_channels():
    for phase in demo.plan_day(7, 90, day=DAY):
        for step in phase.steps:
            if not isinstance(step, demo.Send):
                continue
            channel = CATALOGUE.channel(step.channel)
            assert channel.name.startswith("ingress.")
            assert channel.publisher == step.system, (step.kinds, step.channel, step.system)
            if step.subject and "s14_multi_site" in step.kinds:
                assert f".{step.site}." not in step.subject  # the one publish NATS must refuse


def test_the_malformed_burst_has_one_message_of_each_kind_of_bad_input():
    (burst,) = [phase for phase in demo.plan_day(7, 0, day=DAY) if phase.name == "bad input"]
    bad = [s for s in burst.steps if "s11_bad_input" in s.kinds]
    assert len(bad) == 7
    assert {s.site for s in bad} == {"north"}
    assert any(s.corrupt == "segment_count" and s.x12 == "810" for s in bad)
    assert any(s.subject and s.subject.endswith(".v2") for s in bad)
    assert any(isinstance(s.payload, bytes) and len(s.payload) > 262_144 for s in bad)


def test_the_x12_documents_render_once_the_purchase_orders_are_known(tmp_path):
    player = demo.Player(demo.Target("nats://unused", tmp_path, {}))
    player.bound = {"po:north:clean": "PO-NORTH-000001", "po:north:price": "PO-NORTH-000002"}
    steps = [s for phase in demo.plan_day(7, 0, day=DAY) for s in phase.steps]
    clean_asn = next(s for s in steps if "asn_x12" in s.kinds and s.site == "north")
    rendered = player.render(clean_asn)
    assert rendered.startswith(b"ISA") and b"PO-NORTH-000001" in rendered
    price = next(
        s for s in steps if "s02_price_variance" in s.kinds and getattr(s, "x12", "") == "810"
    )
    assert b"PO-NORTH-000002" in player.render(price) and b"<<" not in player.render(price)
