"""The one CSV writer for every file Janitor exports: no cell can start a spreadsheet formula.

Finance opens these files in a spreadsheet, and cells hold user input (revocation reasons, case
references, request paths, user agents). A spreadsheet runs a cell starting with =, +, -, @
(or a tab or carriage return before one) as a formula, so such a cell is written with a
leading apostrophe: shown as text, never run (OWASP "CSV injection").
"""

import csv
import io
from collections.abc import Iterable, Iterator, Sequence

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """`value` as the text of one cell, neutralised if a spreadsheet would run it."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def csv_lines(*, header: Sequence[str], rows: Iterable[Sequence]) -> Iterator[str]:
    """The header line, then one CSV line per row (for a StreamingHttpResponse)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: Sequence) -> str:
        writer.writerow([csv_cell(cell) for cell in cells])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(header)
    for row in rows:
        yield line(row)
