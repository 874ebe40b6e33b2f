"""manage.py import_accounts: validates every line, refuses with reasons, upserts idempotently."""

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AccessAudit, Account, User
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db
HEADER = "public_id,email,name,is_active,stripe_customer_id\n"
GOOD = HEADER + (
    "user-aaf21-bb34-cc55,Ada@Example.com,Ada Lovelace,true,cus_ada\n"
    "user-bbb22-cc34-dd55,ben@example.com,Ben,false,\n"
    "user-ccc33-dd34-ee55,chloe@example.com,Chloé Ünïcode,1,cus_chloe\n"
)


def _run(tmp_path, text, name="users.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    call_command("import_accounts", str(path))


@pytest.mark.smoke
def test_import_creates_then_changes_nothing_on_rerun(tmp_path, capsys):
    _run(tmp_path, GOOD)
    assert (
        "3 member(s) created, 0 updated, 0 unchanged; 3 new account(s)" in capsys.readouterr().out
    )
    ada = User.objects.get(public_id="user-aaf21-bb34-cc55")
    ben = User.objects.get(public_id="user-bbb22-cc34-dd55")
    assert ada.email == "ada@example.com" and ada.stripe_customer_id == "cus_ada"
    assert (ben.account.is_active, ben.access_status) == (False, "revoked")
    assert AccessAudit.objects.filter(actor="system:import").count() == 3
    _run(tmp_path, GOOD)
    assert (
        "0 member(s) created, 0 updated, 3 unchanged; 0 new account(s)" in capsys.readouterr().out
    )
    assert User.objects.filter(is_staff=False).count() == 3
    assert AccessAudit.objects.count() == 3


def test_import_updates_profiles_but_never_moves_access(tmp_path, capsys, admin_user):
    from accounts.services.access_status import access_status_change

    _run(tmp_path, GOOD)
    ada = Account.objects.get(public_id="user-aaf21-bb34-cc55")
    for status in ("revoked_pending", "revoked"):  # revoked by staff, after approval
        access_status_change(
            account=ada,
            to_status=status,
            actor=admin_user.email,
            actor_user=admin_user,
            reason="chargeback",
        )
    audit_rows = AccessAudit.objects.count()
    capsys.readouterr()
    _run(tmp_path, GOOD.replace("Ben,false", "Benjamin,true").replace("Chloé Ünïcode,1", "Chloé,0"))
    out = capsys.readouterr().out
    assert "0 member(s) created, 2 updated, 1 unchanged" in out
    ben = User.objects.get(public_id="user-bbb22-cc34-dd55")
    chloe = User.objects.get(public_id="user-ccc33-dd34-ee55")
    ada.refresh_from_db()
    assert (ben.name, ben.access_status) == ("Benjamin", "revoked")  # an admin restores access
    assert (chloe.name, chloe.access_status) == ("Chloé", "active")  # revoking needs approval
    assert ada.access_status == "revoked"  # the file still says true: the revocation stands
    assert AccessAudit.objects.count() == audit_rows
    assert "line 3: user-bbb22-cc34-dd55 is revoked in Janitor; is_active=true ignored" in out
    assert "line 4: user-ccc33-dd34-ee55 is active in Janitor; is_active=false ignored" in out
    assert "line 2: user-aaf21-bb34-cc55 is revoked in Janitor; is_active=true ignored" in out


@pytest.mark.smoke
def test_bad_lines_are_refused_with_reasons_and_nothing_is_written(tmp_path, capsys):
    UserFactory(public_id="user-taken", email="taken@example.com", stripe_customer_id="cus_taken")
    StaffFactory(public_id="user-staff")
    bad = HEADER + (
        "user-ok,ok@example.com,Ok,true,\n"
        ",noid@example.com,No id,true,\n"
        "user-bad-email,not-an-email,X,true,\n"
        "user-bad-flag,flag@example.com,X,perhaps,\n"
        "user-bad-cus,cus@example.com,X,true,acct_123\n"
        "user-dup,ok@example.com,Dup email,true,\n"
        "user-other,taken@example.com,Steals email,true,\n"
        "user-staff,staffy@example.com,Staff,true,\n"
        "user-extra,extra@example.com,X,true,,surplus\n"
    )
    with pytest.raises(CommandError, match="8 line\\(s\\) refused; nothing was imported"):
        _run(tmp_path, bad)
    err = capsys.readouterr().err
    for expected in [
        "line 3: public_id is empty",
        "line 4: email 'not-an-email' is not a valid address",
        "line 5: is_active 'perhaps' is not true/false",
        "line 6: stripe_customer_id 'acct_123' does not start with cus_",
        "line 7: 'ok@example.com' already appears on line 2",
        "line 8: email taken@example.com belongs to user-taken",
        "line 9: user-staff is a staff account",
        "line 10: more cells than the header has columns",
    ]:
        assert expected in err
    assert not User.objects.filter(public_id="user-ok").exists()


def test_missing_columns_and_missing_file(tmp_path):
    with pytest.raises(CommandError, match="1 line"):
        _run(tmp_path, "id,email\n1,a@b.c\n")
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_accounts", str(tmp_path / "absent.csv"))


def test_values_the_columns_cannot_hold_are_refused_with_their_line_not_a_traceback(
    tmp_path, capsys
):
    """Checks that pass the address syntax but not the columns: a 300-character email (an
    address may be 320), a customer id over 255 characters, a NUL in a cell."""
    long_email = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".example"
    bad = HEADER + (
        "user-ok,ok@example.com,Ok,true,\n"
        f"user-long,{long_email},Long,true,\n"
        f"user-cus,cus@example.com,Cus,true,cus_{'x' * 300}\n"
        "user-nul,nul@example.com,Nu\x00l,true,\n"
    )
    with pytest.raises(CommandError, match="3 line\\(s\\) refused; nothing was imported"):
        _run(tmp_path, bad)
    err = capsys.readouterr().err
    assert "line 3: email is longer than 254 characters" in err
    assert "line 4: stripe_customer_id is longer than 255 characters" in err
    assert "line 5: name contains a NUL character" in err
    assert not Account.objects.exists()
