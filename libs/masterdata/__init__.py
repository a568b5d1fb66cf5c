"""Master data as every service sees it: the pure rules (units of measure, the contract price in
force, approved substitutions), UDI barcode parsing, and the local replica each service keeps
from the items service's events, so it keeps working when items is down."""
