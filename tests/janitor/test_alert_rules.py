"""The shipped Prometheus alert rules: valid for promtool, and about metrics Janitor exports."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client
from django.urls import reverse

RULES = Path(__file__).resolve().parents[2] / "docs" / "monitoring" / "janitor-alerts.yml"
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "le", "status", "state",
                "kind", "instance"}  # fmt: skip


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/system-deps --tests installs Debian's prometheus")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.django_db
def test_every_rule_names_a_metric_janitor_exports():
    scrape = Client().get(reverse("metrics")).content.decode()
    exported = {line.split()[2] for line in scrape.splitlines() if line.startswith("# TYPE ")}
    series = set(exported)
    for name in exported:  # counters and histograms expose suffixed series
        series |= {f"{name}_total", f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert len(rules) >= 8
    for rule in rules:
        names = {
            word
            for word in re.findall(r"[a-z_][a-z0-9_]*", re.sub(r"\{[^}]*\}", "", rule["expr"]))
            if word not in PROMQL_WORDS
        }
        janitor = {n for n in names if n.startswith("janitor_")}
        assert janitor, f"{rule['alert']} names no Janitor metric"
        assert janitor <= series, f"{rule['alert']}: {janitor - series} not exported"
        assert rule["annotations"]["description"]
