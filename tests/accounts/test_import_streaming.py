"""import_accounts streams its file: batch by batch in one transaction, memory flat, every
refusal by line number, nothing written when any line (even the last) is refused."""

import tracemalloc

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AccessAudit, Account, User
from accounts.services.imports import REFUSED_SHOWN, accounts_import
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
HEADER = "public_id,email,name,is_active,stripe_customer_id,account_id,account_name\n"


def _rows(count: int, start: int = 0) -> str:
    """One-person accounts, and every tenth row a member of team-<n // 30> (teams whose rows lie
    far apart, in different batches)."""
    lines = []
    for n in range(start, start + count):
        if n % 10 == 0:
            team = n // 30
            lines.append(f"u-{n},u{n}@example.com,Member {n},true,,team-{team},Team {team}\n")
        else:
            lines.append(
                f"u-{n},u{n}@example.com,Person {n},{'false' if n % 7 == 0 else 'true'},cus_{n},,\n"
            )
    return "".join(lines)


def _run(tmp_path, text: str | bytes):
    path = tmp_path / "export.csv"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    call_command("import_accounts", str(path))


def test_a_file_of_many_batches_imports_with_teams_across_batches():
    report = accounts_import(text=HEADER + _rows(230), batch_size=50)
    assert report.applied and report.created == 230
    singles = 230 - 23
    teams = len({n // 30 for n in range(0, 230, 10)})
    assert report.accounts_created == singles + teams == Account.objects.count()
    team = Account.objects.get(public_id="team-1")  # rows 30, 40, 50: two batches
    assert sorted(team.members.values_list("public_id", flat=True)) == ["u-30", "u-40", "u-50"]
    assert (team.name, team.email) == ("Team 1", "u30@example.com")
    assert Account.objects.get(public_id="u-7").access_status == "revoked"
    assert AccessAudit.objects.filter(actor="system:import").count() == singles + teams
    assert len(report.account_pks) == singles + teams
    # The same file again, in other batch sizes: nothing changes.
    again = accounts_import(text=HEADER + _rows(230), batch_size=17)
    assert (again.created, again.updated, again.unchanged, again.accounts_created) == (0, 0, 230, 0)
    assert AccessAudit.objects.count() == singles + teams


def test_refusals_name_lines_across_batches(tmp_path, capsys, monkeypatch):
    from accounts.services import imports

    monkeypatch.setattr(imports, "BATCH_SIZE", 40)  # the command's batches: 4 here
    text = HEADER + _rows(120)
    text += "u-5,dupe-id@example.com,X,true,,,\n"  # line 122: id of line 7
    text += "u-new,U3@example.com,X,true,,,\n"  # line 123: email of line 5
    text += "u-team,t@example.com,X,false,,team-0,\n"  # line 124: team-0 is active (line 2)
    text += "u-cus,c@example.com,X,true,cus_1,,\n"  # line 125: cus_1 is u-1's (line 3)
    with pytest.raises(CommandError, match="4 line\\(s\\) refused; nothing was imported"):
        _run(tmp_path, text)
    err = capsys.readouterr().err
    assert "line 122: 'u-5' already appears on line 7" in err
    assert "line 123: 'u3@example.com' already appears on line 5" in err
    assert "line 124: is_active differs from line 2 of account team-0" in err
    assert "line 125: 'cus_1' already appears on line 3" in err
    assert not Account.objects.exists() and not User.objects.exists()


def test_a_late_bad_line_rolls_everything_back():
    text = HEADER + _rows(300) + "u-last,not-an-email,X,true,,,\n"
    report = accounts_import(text=text, batch_size=50)
    assert report.refused == [(302, "email 'not-an-email' is not a valid address")]
    assert not Account.objects.exists() and not User.objects.exists()
    assert not AccessAudit.objects.exists()


def test_a_database_refusal_in_a_late_batch_rolls_back_the_written_ones():
    """An account email another account holds (no member has it, so the checks pass): the
    database refuses the batch that writes it, after earlier batches were written."""
    AccountFactory(public_id="holder", email="u251@example.com", members=0)
    report = accounts_import(text=HEADER + _rows(300), batch_size=50)
    assert report.refused_count == 1
    assert report.refused[0][1].startswith("nothing imported: the database refused the file")
    assert list(Account.objects.values_list("public_id", flat=True)) == ["holder"]
    assert not User.objects.exists() and not AccessAudit.objects.exists()


def test_a_line_that_is_not_utf8_is_refused_by_number(tmp_path, capsys):
    text = (HEADER + _rows(5)).encode() + b"u-x,x@example.com,Bj\xf6rn,true,,,\n"
    with pytest.raises(CommandError, match="1 line\\(s\\) refused"):
        _run(tmp_path, text)
    assert (
        "line 7: not UTF-8 (invalid start byte at byte 20 of the line)" in capsys.readouterr().err
    )
    assert not Account.objects.exists()


def test_an_unreadable_csv_is_refused_by_number_not_a_traceback(tmp_path, capsys):
    text = HEADER + _rows(3) + "u-x,x@example.com," + "y" * 200_000 + ",true,,,\n"
    with pytest.raises(CommandError, match="1 line\\(s\\) refused"):
        _run(tmp_path, text)
    assert "line 5: not readable as CSV (field larger than field limit" in capsys.readouterr().err
    assert not Account.objects.exists()


def test_an_endless_line_is_refused_without_reading_it_all(tmp_path, capsys, monkeypatch):
    from accounts.services import imports

    monkeypatch.setattr(imports, "LINE_MAX_BYTES", 1000)
    text = HEADER + _rows(3) + "u-x,x@example.com," + "y" * 5000  # no line end at all
    with pytest.raises(CommandError, match="1 line\\(s\\) refused"):
        _run(tmp_path, text)
    assert "line 5: longer than 1000 bytes; reading stopped here" in capsys.readouterr().err
    assert not Account.objects.exists()


def test_a_byte_order_mark_and_windows_line_ends_are_read(tmp_path):
    text = ("\ufeff" + HEADER + _rows(3)).replace("\n", "\r\n")
    _run(tmp_path, text)
    assert Account.objects.filter(public_id="u-1").exists()


def test_a_file_of_bad_lines_lists_the_first_ones_and_counts_all(tmp_path, capsys):
    count = REFUSED_SHOWN * 3
    text = HEADER + "".join(f"u-{n},bad-{n},X,true,,,\n" for n in range(count))
    with pytest.raises(CommandError, match=f"{count} line\\(s\\) refused"):
        _run(tmp_path, text)
    err = capsys.readouterr().err
    assert "line 2: email 'bad-0' is not a valid address" in err
    assert f"line {REFUSED_SHOWN + 1}:" in err and f"line {REFUSED_SHOWN + 2}:" not in err
    assert f"... and {count - REFUSED_SHOWN} more refused line(s)." in err


def _peak_bytes(rows: int) -> int:
    text = HEADER + _rows(rows, start=rows)  # ids of their own per size
    tracemalloc.start()
    try:
        report = accounts_import(lines=iter(text.splitlines(keepends=True)), batch_size=500)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert report.applied


def test_memory_does_not_grow_with_the_file():
    """The import's own allocations at 2,000 and at 10,000 rows (the file's text excluded: it
    is made before measuring), batches of 500: the same within a batch's worth."""
    small = _peak_bytes(2_000)
    large = _peak_bytes(10_000)
    assert large < small * 1.5, (small, large)


@pytest.mark.smoke
def test_more_rows_than_sqlite_takes_variables_import(tmp_path, capsys):
    """33,000 rows: more than SQLite's 32,766 variables a statement (the old import put every
    id of the file in one query and crashed)."""
    rows = 33_000
    path = tmp_path / "big.csv"
    with path.open("w") as handle:
        handle.write("public_id,email,name,is_active,stripe_customer_id\n")
        for n in range(rows):
            handle.write(f"user-{n},user{n}@example.com,Person {n},true,cus_{n}\n")
    call_command("import_accounts", str(path))
    assert f"{rows} member(s) created" in capsys.readouterr().out
    assert Account.objects.count() == rows == User.objects.count()
