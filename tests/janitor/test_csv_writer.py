"""janitor/csv_writer.py: the one CSV writer; no cell it writes can start a spreadsheet formula."""

import csv
import io
import re
from pathlib import Path

import pytest

from janitor.csv_writer import FORMULA_TRIGGERS, csv_cell, csv_lines

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_starting_a_formula_is_written_as_text(trigger):
    assert csv_cell(f"{trigger}SUM(A1:A9)") == f"'{trigger}SUM(A1:A9)"


@pytest.mark.parametrize("value", ["plain", "2026-12-01T00:00:00+00:00", "a=b", " =1", 42, None])
def test_other_cells_are_left_alone(value):
    assert csv_cell(value) == ("" if value is None else str(value))


def test_lines_are_valid_csv_with_every_cell_neutralised():
    lines = list(csv_lines(header=["a", "b"], rows=[["=1+1", 'x,"y"\nz'], ["@me", None]]))
    assert len(lines) == 3
    parsed = list(csv.reader(io.StringIO("".join(lines))))
    assert parsed == [["a", "b"], ["'=1+1", 'x,"y"\nz'], ["'@me", ""]]
    assert set(FORMULA_TRIGGERS) == {"=", "+", "-", "@", "\t", "\r"}


def test_no_other_module_writes_csv():
    """Every export goes through csv_lines: a new csv.writer elsewhere fails here."""
    writers = []
    for package in ("accounts", "janitor", "reconciliation"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "janitor" / "csv_writer.py":
                continue
            if re.search(r"\bcsv\.(writer|DictWriter)\b", path.read_text()):
                writers.append(str(path.relative_to(ROOT)))
    assert writers == []
