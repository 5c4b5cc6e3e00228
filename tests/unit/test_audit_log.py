"""The system tests' audit-log reader: lines skipped unparsed are exactly those the field filters would drop."""

from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.kubesnap.snapshots.tests.system.cluster_helpers import AuditLog

AGENT = "kubesnap.snapshots test/test_one-1a2b3c4d"


def event(number, user, verb, namespace=None, name=None, agent=AGENT, stage="ResponseComplete"):
    ref = {"resource": "persistentvolumeclaims", "apiVersion": "v1"}
    ref.update({key: value for key, value in (("namespace", namespace), ("name", name)) if value})
    # Go's encoder writes <, > and & as \u escapes; json.dumps(ensure_ascii) does the same for what Go would leave.
    line = json.dumps({"auditID": f"id-{number}", "stage": stage, "verb": verb, "user": {"username": user},
                       "userAgent": agent, "objectRef": ref, "responseStatus": {"code": 200}}, separators=(",", ":"))
    return line.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def ids(events):
    return [e["auditID"] for e in events]


def test_filters_and_the_tests_own_agent_select_the_same_events_with_lines_skipped_unparsed(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text("", encoding="utf-8")
    audit = AuditLog(path, module_agent=AGENT)
    lines = [
        event(1, "kubesnap-admin", "create", "shop", "data"),
        event(2, "kubesnap-admin", "get", "shop", "data", agent="kubesnap.snapshots test/test_other-99999999"),
        event(3, "kubesnap-admin", "watch", "shop", stage="ResponseStarted"),
        event(3, "kubesnap-admin", "watch", "shop"),  # the same request's second event
        event(4, "system:kube-controller-manager", "list", "shop", agent="kube-controller-manager/v1.35"),
        event(5, "kubesnap-admin", "get", "shop-2", "data"),
        event(6, "kubesnap-admin", "get", None, None, agent="<kubectl> & friends"),
    ]
    path.write_text("\n".join(lines) + "\n" + lines[0][:40], encoding="utf-8")  # and half a line being written
    assert ids(audit.events(user="kubesnap-admin", namespace="shop")) == ["id-1", "id-2", "id-3"]
    assert ids(audit.events(namespace="shop", name="data")) == ["id-1", "id-2"]
    assert ids(audit.events(user="system:kube-controller-manager")) == ["id-4"]
    assert ids(audit.module_events()) == ["id-1", "id-3", "id-5"]
    assert ids(audit.module_events(namespace="shop", verb="watch")) == ["id-3"]
    assert ids(audit.events(verb="get")) == ["id-2", "id-5", "id-6"]
    assert audit.count(user="kubesnap-admin") == 5
    audit.mark()
    assert audit.events() == []


def test_a_field_it_does_not_know_is_an_error_not_a_filter_that_matches_everything(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text(event(1, "kubesnap-admin", "get", "shop", "data") + "\n", encoding="utf-8")
    audit = AuditLog(path, since=0, module_agent=AGENT)
    for read in (audit.events, audit.module_events, audit.count):
        with pytest.raises(TypeError, match="no field"):
            read(usr="nobody")


def test_a_request_received_before_the_mark_and_written_after_it_is_left_out(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text("", encoding="utf-8")
    audit = AuditLog(path, module_agent=AGENT)
    before = (audit.marked_at - datetime.timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    after = (audit.marked_at + datetime.timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lines = [json.dumps(dict(json.loads(event(1, "kubesnap-admin", "watch", "shop")), requestReceivedTimestamp=before)),
             json.dumps(dict(json.loads(event(2, "kubesnap-admin", "list", "shop")), requestReceivedTimestamp=after))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # both written after the mark
    assert ids(audit.module_events(namespace="shop")) == ["id-2"]
    assert ids(AuditLog(path, since=0, module_agent=AGENT).module_events(namespace="shop")) == ["id-1", "id-2"]  # no mark: all
