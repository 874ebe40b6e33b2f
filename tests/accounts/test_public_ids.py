"""Public ids: one documented alphabet, enforced at import and creation; downloads named safely."""

from email.message import EmailMessage

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import PUBLIC_ID_RULE, AccessAudit, User, public_id_generate
from tests.factories import ActivityFactory, UserFactory

pytestmark = pytest.mark.django_db

HEADER = "public_id,email,name,is_active,stripe_customer_id\n"
EVIL = "\";filename*=UTF-8''evil.html;x=\""
REFUSED = [
    EVIL,
    "a b",
    "user/1",
    "../etc",
    "-starts-with-a-dash",
    ".hidden",
    "zoë",
    "a;b",
    "a\\b",
    "x" * 65,
]
ALLOWED = ["user-aaf21-bb34-cc55", "A.b_c-9", "7", "x" * 64]


def _csv_line(public_id: str, n: int) -> str:
    quoted = '"' + public_id.replace('"', '""') + '"'
    return f"{quoted},person{n}@example.com,Person,true,\n"


def _import(tmp_path, text):
    path = tmp_path / "users.csv"
    path.write_text(text, encoding="utf-8")
    call_command("import_accounts", str(path))


def test_import_refuses_each_id_outside_the_alphabet_and_writes_nothing(tmp_path, capsys):
    text = HEADER + "".join(_csv_line(pid, n) for n, pid in enumerate(REFUSED + ["user-ok"]))
    with pytest.raises(CommandError, match=f"{len(REFUSED)} line\\(s\\) refused"):
        _import(tmp_path, text)
    err = capsys.readouterr().err
    for line, public_id in enumerate(REFUSED, start=2):
        assert f"line {line}: public_id {public_id!r} is not allowed: use {PUBLIC_ID_RULE}" in err
    assert not User.objects.exists() and not AccessAudit.objects.exists()


def test_import_accepts_the_alphabet(tmp_path, capsys):
    _import(tmp_path, HEADER + "".join(_csv_line(pid, n) for n, pid in enumerate(ALLOWED)))
    assert set(User.objects.values_list("public_id", flat=True)) == set(ALLOWED)


@pytest.mark.parametrize("public_id", REFUSED)
def test_model_validation_and_create_user_refuse_ids_outside_the_alphabet(public_id):
    with pytest.raises(ValidationError) as error:
        User(public_id=public_id, email="v@example.com", password="!").full_clean()
    assert set(error.value.message_dict) == {"public_id"}
    with pytest.raises(ValidationError):
        User.objects.create_user("v@example.com", "pw-long-enough", public_id=public_id)
    assert not User.objects.exists()


def test_generated_ids_are_in_the_alphabet():
    user = User(email="gen@example.com", public_id=public_id_generate())
    user.full_clean(exclude=["password"])
    assert all(ch.isalnum() or ch == "-" for ch in user.public_id)


@pytest.mark.parametrize(
    ("url_name", "extension"), [("evidence_csv", "csv"), ("evidence_pdf", "pdf")]
)
def test_an_old_id_cannot_rename_an_evidence_download(finance_client, url_name, extension):
    """An id stored before the alphabet existed still cannot make the browser save evil.html."""
    account = UserFactory(public_id=EVIL)  # straight into the table, as legacy data would be
    ActivityFactory(account=account)
    response = finance_client.post(reverse(url_name, args=[account.public_id]))
    assert response.status_code == 200
    header = response["Content-Disposition"]
    assert "filename*=" not in header and header.count("=") == 1
    parsed = EmailMessage()
    parsed["Content-Disposition"] = header
    filename = parsed.get_filename()
    assert parsed.get_content_disposition() == "attachment"
    assert filename.startswith("evidence-") and filename.endswith(f".{extension}")
    assert all(ch.isalnum() or ch in "-_." for ch in filename)
