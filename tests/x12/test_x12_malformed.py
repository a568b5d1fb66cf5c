"""Each kind of malformed document is refused with a message an operator can act on: what was
expected, what was found, and which segment (counted from the ISA) and element."""

import pytest
from x12_samples import HOSPITAL, SITE, SUPPLIER, invoice, purchase_order, ship_notice

from sinew.x12 import (
    X12Error,
    parse_810,
    parse_850,
    parse_855,
    parse_856,
    write_810,
    write_850,
    write_856,
)

ENVELOPE = dict(sender_id=HOSPITAL, receiver_id=SUPPLIER, control_number=42)


def po_lines() -> list[str]:
    return write_850(purchase_order(), **ENVELOPE).decode().splitlines()


# The sample 850, one segment a line:
#  1 ISA  2 GS  3 ST  4 BEG  5 CUR  6 REF*DP  7 REF*RQ  8 N1*SU  9 N1*ST  10 PO1  11 PID
#  12 REF*CT  13 AMT  14 PO1  15 PID  16 REF*CT  17 AMT  18 CTT  19 AMT*TT  20 SE  21 GE  22 IEA


def document(lines: list[str], *, recount: bool = True) -> bytes:
    """The lines as a document; with ``recount`` SE01 is made right again, so a test breaks
    one rule at a time."""
    if recount:
        st = next(i for i, line in enumerate(lines) if line.startswith("ST*"))
        se = next(i for i, line in enumerate(lines) if line.startswith("SE*"))
        control = lines[se].rstrip("~").split("*")[2]
        lines = [*lines[:se], f"SE*{se - st + 1}*{control}~", *lines[se + 1 :]]
    return ("\n".join(lines) + "\n").encode()


def replaced(lines: list[str], old: str, new: str) -> list[str]:
    matches = [i for i, line in enumerate(lines) if line.startswith(old)]
    assert matches, old
    lines = list(lines)
    lines[matches[0]] = new
    return lines


def without(lines: list[str], start: str) -> list[str]:
    return [line for line in lines if not line.startswith(start)]


def refused(parse, data: bytes) -> X12Error:
    with pytest.raises(X12Error) as caught:
        parse(data, SITE)
    return caught.value


def test_a_wrong_segment_count_names_both_numbers():
    error = refused(parse_850, document(replaced(po_lines(), "SE*", "SE*19*0042~"), recount=False))
    assert str(error) == "SE01 says 19 segments, the transaction set has 18 (segment 20 (SE))"
    assert (error.segment_index, error.segment_id, error.element) == (20, "SE", "SE01")


def test_interchange_control_numbers_must_match():
    error = refused(parse_850, document(replaced(po_lines(), "IEA*", "IEA*1*000000043~")))
    assert str(error) == (
        "IEA02 says control number '000000043', ISA13 says '000000042': they must match "
        "(segment 22 (IEA))"
    )
    assert error.element == "IEA02"


def test_group_control_numbers_must_match():
    error = refused(parse_850, document(replaced(po_lines(), "GE*", "GE*1*43~")))
    assert str(error) == (
        "GE02 says control number '43', GS06 says '42': they must match (segment 21 (GE))"
    )


def test_transaction_set_control_numbers_must_match():
    error = refused(parse_850, document(replaced(po_lines(), "SE*", "SE*18*0043~"), recount=False))
    assert str(error) == (
        "SE02 says control number '0043', ST02 says '0042': they must match (segment 20 (SE))"
    )


def test_group_and_interchange_counts_must_be_one():
    error = refused(parse_850, document(replaced(po_lines(), "GE*", "GE*2*42~")))
    assert (
        str(error) == "GE01 says 2 transaction sets, the functional group has 1 (segment 21 (GE))"
    )
    error = refused(parse_850, document(replaced(po_lines(), "IEA*", "IEA*3*000000042~")))
    assert str(error) == "IEA01 says 3 functional groups, the interchange has 1 (segment 22 (IEA))"


def test_a_missing_mandatory_segment_says_what_came_instead():
    error = refused(parse_850, document(without(po_lines(), "BEG*")))
    assert str(error) == "expected BEG after ST, found CUR (segment 4 (CUR))"
    error = refused(parse_850, document(without(po_lines(), "CTT*")))
    # the AMT*TT is taken for the last line's second amount, so the SE is what comes instead
    assert str(error) == "expected CTT after the last PO1 loop, found SE (segment 19 (SE))"


def test_a_missing_mandatory_reference_is_named():
    error = refused(parse_850, document(without(po_lines(), "REF*DP")))
    assert str(error) == (
        "expected REF*DP (cost centre) in the heading, found none (segment 4 (BEG))"
    )
    error = refused(parse_850, document(without(po_lines(), "N1*ST")))
    assert str(error) == (
        "expected N1*ST (ship to) with N103 92 before PO1, found none (segment 9 (PO1))"
    )


def test_an_810_without_its_total_is_refused():
    lines = write_810(invoice(), **ENVELOPE).decode().splitlines()
    error = refused(parse_810, document(without(lines, "TDS*")))
    assert str(error) == (
        "expected TDS after the last IT1 loop, found TXI; TXI cannot come after REF in the IT1 "
        "loop (segment 14 (TXI))"
    )


def test_a_non_numeric_quantity_is_refused():
    lines = replaced(po_lines(), "PO1*1*", "PO1*1*2O*BX*1200.00**IN*ITEM-STENT-3018~")
    error = refused(parse_850, document(lines))
    assert str(error) == "PO102 must be a number, found '2O' (segment 10 (PO1))"
    assert error.element == "PO102"


def test_an_amount_in_cents_takes_digits_only():
    lines = write_810(invoice(), **ENVELOPE).decode().splitlines()
    error = refused(parse_810, document(replaced(lines, "TDS*", "TDS*21407.60~")))
    assert str(error) == (
        "TDS01 must be an amount in cents (N2, digits only), found '21407.60' (segment 14 (TDS))"
    )


def test_an_impossible_date_is_refused():
    lines = replaced(po_lines(), "BEG*", "BEG*00*SA*PO-2025-1001**20250230~")
    error = refused(parse_850, document(lines))
    assert str(error) == "BEG05 must be a date CCYYMMDD, found '20250230' (segment 4 (BEG))"


def test_a_date_in_another_form_is_refused():
    lines = replaced(po_lines(), "BEG*", "BEG*00*SA*PO-2025-1001**250303~")
    assert str(refused(parse_850, document(lines))) == (
        "BEG05 must be a date CCYYMMDD, found '250303' (segment 4 (BEG))"
    )


def test_a_different_transaction_set_is_refused_by_its_st01():
    data = write_810(invoice(), **ENVELOPE)
    error = refused(parse_850, data)
    assert str(error) == (
        "ST01 must be 850 (purchase order), found '810' (invoice) (segment 3 (ST))"
    )
    assert error.element == "ST01"
    assert str(refused(parse_855, data)).startswith("ST01 must be 855 (purchase order ackn")


def test_a_truncated_isa_is_refused():
    data = write_850(purchase_order(), **ENVELOPE)
    error = refused(parse_850, data[:60])
    assert str(error) == (
        "the ISA is cut short: it is 106 characters wide, the document ends after 60 "
        "(segment 1 (ISA))"
    )


def test_an_isa_element_of_the_wrong_width_is_refused():
    lines = po_lines()
    lines[0] = lines[0].replace("SINEWNORTH     ", "SINEWNORTH    ")
    error = refused(parse_850, document(lines))
    assert str(error) == (
        "ISA06 must be 15 characters wide (the ISA is fixed width, 106 characters), "
        "found 'SINEWNORTH    ' (segment 1 (ISA))"
    )
    assert error.element == "ISA06"


def test_a_document_that_is_not_x12_is_refused():
    assert str(refused(parse_850, b'{"po_number": "PO-1"}')) == (
        "an interchange starts with ISA, found '{\"p' (segment 1 (ISA))"
    )


def test_a_document_cut_off_after_the_transaction_set_is_refused():
    lines = po_lines()[:-2]  # no GE, no IEA
    assert str(refused(parse_850, document(lines))) == (
        "expected GE after SE, found nothing (segment 20 (SE))"
    )


def test_two_transaction_sets_in_one_interchange_are_refused():
    lines = po_lines()
    st, se = 2, 19
    second = [line.replace("*0042~", "*0043~") for line in lines[st : se + 1]]
    two = [*lines[: se + 1], *second, "GE*2*42~", lines[-1]]
    error = refused(parse_850, document(two, recount=False))
    assert str(error) == (
        "a second transaction set: sinew.x12 reads exactly one ST/SE per document, send each "
        "transaction set in its own interchange (segment 21 (ST))"
    )


def test_two_functional_groups_in_one_interchange_are_refused():
    lines = po_lines()
    two = [*lines[:-1], *lines[1:-1], "IEA*2*000000042~"]
    assert str(refused(parse_850, document(two, recount=False))) == (
        "a second functional group: sinew.x12 reads exactly one transaction set per document, "
        "send each in its own interchange (segment 22 (GS))"
    )


def test_a_segment_out_of_order_in_its_loop_is_refused():
    lines = po_lines()
    lines[11], lines[12] = lines[12], lines[11]  # AMT before REF*CT in the first PO1 loop
    assert str(refused(parse_850, document(lines))) == (
        "expected CTT after the last PO1 loop, found REF; REF cannot come after AMT in the PO1 "
        "loop (segment 13 (REF))"
    )


def test_line_totals_must_add_up():
    lines = replaced(po_lines(), "CTT*", "CTT*3*27~")
    assert str(refused(parse_850, document(lines))) == (
        "CTT01 says 3 lines, the purchase order has 2 (segment 18 (CTT))"
    )
    lines = replaced(po_lines(), "CTT*", "CTT*2*26~")
    assert str(refused(parse_850, document(lines))) == (
        "CTT02 says the quantities add up to 26, the lines add up to 27 (segment 18 (CTT))"
    )


def test_a_line_number_used_twice_is_refused():
    lines = replaced(po_lines(), "PO1*2*", "PO1*1*25*EA*38.50**IN*ITEM-GUIDEWIRE-014~")
    assert str(refused(parse_850, document(lines))) == (
        "PO101 says line 1, which an earlier PO1 already numbers (segment 14 (PO1))"
    )


def test_a_bill_only_implant_without_its_usage_is_refused():
    lines = po_lines()
    lines.insert(12, "REF*LT*LOT-A7731~")
    assert str(refused(parse_850, document(lines))) == (
        "a lot, serial or expiry (REF*LT, REF*SE, DTM*036) belongs to a bill-only line, which "
        "needs REF*ZZ CASE, USAGE and BILL ONLY REQUEST; found none of them (segment 10 (PO1))"
    )


def ack_document(*segments: str) -> bytes:
    head = write_850(purchase_order(), **ENVELOPE).decode().splitlines()[0]
    return document(
        [
            head,
            "GS*PR*BSXEDI*SINEWNORTH*20250303*1642*42*X*005010~",
            "ST*855*0042~",
            "BAK*00*AC*PO-2025-1001*20250303~",
            *segments,
            "SE*0*0042~",
            "GE*1*42~",
            "IEA*1*000000042~",
        ]
    )


def test_an_855_line_without_a_status_is_refused():
    error = refused(parse_855, ack_document("PO1*1~", "PO1*2~", "ACK*IA~"))
    assert str(error) == (
        "expected ACK in the PO1 loop of line 1: every line needs a status, found PO1 "
        "(segment 6 (PO1))"
    )


def test_an_unknown_line_status_lists_the_ones_sinew_reads():
    error = refused(parse_855, ack_document("PO1*1~", "ACK*XX~"))
    assert str(error) == (
        "ACK01 must be one of IA, AR, IQ, IP, IC, IB, DR, IS, IR, ID, found 'XX' (segment 6 (ACK))"
    )


def test_a_quantity_needs_its_unit():
    error = refused(parse_855, ack_document("PO1*1~", "ACK*IQ*3~"))
    assert str(error) == "ACK02 needs ACK03 (segment 6 (ACK))"


def test_a_time_without_a_fixed_offset_is_refused():
    error = refused(parse_855, ack_document("DTM*097*20250303*1642*ET~"))
    assert str(error) == (
        "DTM04 must be one of UT, GM, ES, ED, CS, CD, MS, MD, PS, PD, found 'ET' (segment 5 (DTM))"
    )


def asn_lines() -> list[str]:
    return write_856(ship_notice(), **ENVELOPE).decode().splitlines()


def test_hl_levels_must_be_numbered_in_order():
    lines = replaced(asn_lines(), "HL*2*", "HL*3*1*O*1~")
    assert str(refused(parse_856, document(lines))) == (
        "HL01 must be 2: levels are numbered 1, 2, 3 ... in order, found '3' (segment 12 (HL))"
    )


def test_an_hl_must_hang_under_a_level_above_it():
    lines = replaced(asn_lines(), "HL*6*", "HL*6*9*I*0~")
    assert str(refused(parse_856, document(lines))) == (
        "HL02 says parent '9', which is not a level above this one (segment 35 (HL))"
    )
    lines = replaced(asn_lines(), "HL*2*", "HL*2*1*I*1~")
    assert str(refused(parse_856, document(lines))) == (
        "HL03 I (item) cannot hang under HL 1 (shipment) (segment 12 (HL))"
    )


def test_an_856_without_a_ship_date_is_refused():
    lines = without(asn_lines(), "DTM*011")
    assert str(refused(parse_856, document(lines))) == (
        "expected DTM*011 (shipped) in the shipment level or the heading, found none "
        "(segment 5 (HL))"
    )


def test_an_item_without_its_quantity_is_refused():
    lines = [line for line in asn_lines() if line != "SN1**25*EA~"]
    assert str(refused(parse_856, document(lines))) == (
        "expected SN1 (quantity shipped) in HL 6 (item), found none (segment 35 (HL))"
    )


def test_hl04_must_say_whether_children_follow():
    lines = replaced(asn_lines(), "HL*6*", "HL*6*2*I*1~")
    assert str(refused(parse_856, document(lines))) == (
        "HL04 says '1', but HL 6 (item) has no levels under it (segment 35 (HL))"
    )


def test_anything_after_iea_is_refused():
    data = write_850(purchase_order(), **ENVELOPE)
    assert str(refused(parse_850, data + b"GS*PO~\n")) == (
        "expected nothing after IEA, found GS (segment 23 (GS))"
    )
    assert str(refused(parse_850, data + b"GS*PO\n")) == (
        "the document ends inside a segment: 'GS*PO' has no segment terminator '~' "
        "(segment 23 (GS))"
    )


def test_a_credit_memo_is_not_an_invoice():
    lines = write_810(invoice(), **ENVELOPE).decode().splitlines()
    lines = replaced(lines, "BIG*", "BIG*20250310*CM-1**PO-2025-1001***CR~")
    assert str(refused(parse_810, document(lines))) == (
        "BIG07 CR is a credit memo; Sinew reads invoices (segment 4 (BIG))"
    )


def test_a_charge_sinew_cannot_place_is_refused():
    lines = write_810(invoice(), **ENVELOPE).decode().splitlines()
    lines = replaced(lines, "SAC*", "SAC*A*C310***500~")
    assert str(refused(parse_810, document(lines))) == (
        "SAC A*C310: an invoice submission has freight (SAC*C*D240) and tax (TXI) beside its "
        "lines, no other charge or allowance (segment 16 (SAC))"
    )


def test_a_document_that_breaks_the_contract_says_where():
    lines = replaced(po_lines(), "N1*SU", "N1*SU**92*" + "S" * 65 + "~")
    assert str(refused(parse_850, document(lines))) == (
        "N104 must be an identifier of 1 to 64 characters not starting with a space, found "
        f"'{'S' * 65}' (segment 8 (N1))"
    )
    with pytest.raises(X12Error, match=r"valid PurchaseOrder: .* at `\$.site`"):
        parse_850(document(po_lines()), "Not A Site")


def test_an_004010_interchange_is_refused():
    lines = po_lines()
    lines[0] = lines[0].replace("*00501*", "*00401*")
    error = refused(parse_850, document(lines))
    assert str(error) == "ISA12 must be 00501 (X12 005010), found '00401' (segment 1 (ISA))"


def test_the_functional_group_must_fit_the_transaction_set():
    lines = replaced(po_lines(), "GS*", "GS*IN*SINEWNORTH*BSXEDI*20250303*0000*42*X*005010~")
    assert str(refused(parse_850, document(lines))) == (
        "GS01 must be PO: an 850 travels in a PO functional group, found 'IN' (segment 2 (GS))"
    )


def test_delimiters_that_clash_are_refused():
    lines = po_lines()
    lines[0] = lines[0][:-2] + "~~"  # ISA16 the same as the segment terminator
    assert str(refused(parse_850, document(lines))) == (
        "the element separator, ISA11 repetition separator, ISA16 sub-element separator and "
        "segment terminator must be four different non-alphanumeric characters, found '*~^~' "
        "(segment 1 (ISA))"
    )


def test_a_change_that_says_nothing_about_what_changed_is_refused():
    assert str(refused(parse_855, ack_document("PO1*1~", "ACK*IC~"))) == (
        "ACK01 IC says the line changed, but neither ACK02 (quantity) nor PO104 (price) says "
        "how (segment 6 (ACK))"
    )
