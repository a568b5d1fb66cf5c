"""A small, strict X12 reader and writer for the documents Sinew exchanges (810, 850, 855, 856).

Each parse function reads one interchange holding exactly one transaction set and returns the
contract Struct the JSON channel carries; anything malformed raises X12Error naming the segment
and element. Each write function is its inverse for the fields the document carries
(docs/x12.md lists them).
"""

from .acknowledgement import parse_855, write_855
from .errors import X12Error
from .invoice import parse_810, write_810
from .purchase_order import parse_850, write_850
from .ship_notice import parse_856, write_856

__all__ = [
    "X12Error",
    "parse_810",
    "parse_850",
    "parse_855",
    "parse_856",
    "write_810",
    "write_850",
    "write_855",
    "write_856",
]
