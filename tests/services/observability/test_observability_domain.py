"""The pure rules: which keys an event names (never patient data), age buckets, percentiles."""

from datetime import UTC, datetime, timedelta

from sinew.services.observability import domain


def test_keys_are_found_in_nested_lines_and_patient_data_is_never_indexed():
    payload = {
        "po_number": "PO-1",
        "patient_token": "pt-aaaaaaaaaaaaaaaa",
        "mrn": "123",
        "lines": ({"serials": ["S1", "S2"], "lot": "L1", "bill_only_usage": {"case_id": "C1"}},),
        "invoices": [{"invoice_number": "INV-1"}],
    }
    keys = domain.business_keys(payload)
    assert keys == sorted(
        [
            ("po", "PO-1"),
            ("serial", "S1"),
            ("serial", "S2"),
            ("lot", "L1"),
            ("case", "C1"),
            ("invoice", "INV-1"),
        ]
    )
    assert all("pt-" not in value and value != "123" for _, value in keys)


def test_age_buckets():
    now = datetime(2024, 3, 10, tzinfo=UTC)
    assert domain.age_bucket(now - timedelta(hours=5), now) == "under_1_day"
    assert domain.age_bucket(now - timedelta(days=2), now) == "1_to_3_days"
    assert domain.age_bucket(now - timedelta(days=4), now) == "3_to_7_days"
    assert domain.age_bucket(now - timedelta(days=30), now) == "over_7_days"


def test_percentiles_use_nearest_rank():
    figures = domain.percentiles([float(n) for n in range(1, 101)])
    assert (figures["p50"], figures["p95"], figures["p99"], figures["count"]) == (50, 95, 99, 100)
    assert domain.percentiles([])["p50"] is None
    assert domain.ratio(2, 3) == 0.6667 and domain.ratio(0, 0) is None
