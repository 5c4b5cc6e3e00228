# What a user sees when input is malformed or huge, through the modules against the local control
# plane: each message names the object, the field and the wrong token, shows the valid form, and
# the whole output stays small however much was written into an annotation.
"""System tests of the modules' messages for malformed and oversized input."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import DELTA_FORM

from .modules import DELTAS, run_module, with_lease
from .test_cycle import annotate

HUGE = 15000
INTERNALS = ("designator", "Unable to parse", "C int", "infinity", "Exceeds the limit")


@pytest.fixture
def run(cluster, lease_namespace):
    def call(name, **args):
        result = run_module(name, str(cluster.kubeconfig), **with_lease(name, lease_namespace, args))
        result.pop("invocation", None)  # the module's own arguments echoed back, not a message
        return result
    return call


def size(result):
    return len(json.dumps(result))


def claims(kube, namespace, annotations):
    """One bound claim per name, annotated as given (pre-bound volumes: no wait for the provisioner)."""
    for name, values in annotations.items():
        kube.create_static_pv_pvc(namespace, name)
        annotate(kube, namespace, name, values)


# Claim name: (its annotations, what the reason must say).
HUGE_CLAIMS = {
    "one-word": ({DELTAS: "P" + "1" * (HUGE - 2) + "D"}, f"{HUGE} characters, at most 32; {DELTA_FORM}"),
    "many-words": ({DELTAS: "P1D " * (HUGE // 4)}, f"has {HUGE // 4} durations, at most 24"),
    "class": ({DELTAS: "PT1H P1D", "kubesnap.io/snapshot-class": "c" * HUGE}, f"'\u2026({HUGE} characters) does not exist"),
}


def test_a_huge_annotation_is_named_and_cut_in_every_module(kube, namespace, run):
    claims(kube, namespace, {name: annotations for name, (annotations, _says) in HUGE_CLAIMS.items()})
    results = {
        "k8s_pv_info": run("k8s_pv_info", namespace=namespace, fail_on_problems=True),
        "snapshot_info": run("snapshot_info", namespace=namespace),
        "k8s_pv_snapshot": run("k8s_pv_snapshot", namespace=namespace),
        "snapshot_expire": run("snapshot_expire", namespace=namespace),
    }
    for module, result in results.items():
        # Under 1.5 KB per volume, its problem, msg and failed_volumes together (3.2 KB in all; it was 180 KB).
        assert size(result) < 1500 * len(HUGE_CLAIMS), (module, size(result))
        problems = {p["object"]: p for p in result["problems"]}
        for name, (_annotations, says) in HUGE_CLAIMS.items():
            problem = problems[f"pvc/{namespace}/{name}"]
            field = "snapshot_class" if name == "class" else f"metadata.annotations[{DELTAS}]"
            assert problem["field"] == field and says in problem["reason"], (module, problem)
            assert len(problem["reason"]) < 600, (module, problem)
        if module != "snapshot_info":  # the one module that does not fail on problems
            assert result["failed"] is True and len(result["failed_volumes"]) == len(HUGE_CLAIMS), (module, result)
            # Only problems, no volume failed: the message says so, not that snapshots were not taken or deleted.
            assert result["msg"].startswith("objects asked for protection but cannot get it: "), (module, result["msg"])


# Claim name: (deltas annotation, the token named, what the reason says about it).
MALFORMED = {
    "negative": ("PT1H P-1D", "'P-1D'", "must be positive; " + DELTA_FORM),
    "too-large": ("PT1H P99999999999999D", "'P99999999999999D'", "is longer than 1000 years"),
    "digits": ("PT1H P" + "9" * 5000 + "D", "'P999999999", "5002 characters, at most 32; " + DELTA_FORM),
    "word": ("PT1H weekly", "'weekly'", "invalid ISO 8601 duration 'weekly' in retention policy 'PT1H weekly': " + DELTA_FORM),
}


def test_malformed_deltas_name_the_token_and_the_valid_form(kube, namespace, run):
    claims(kube, namespace, {name: {DELTAS: deltas} for name, (deltas, _token, _says) in MALFORMED.items()})
    result = run("k8s_pv_info", namespace=namespace)
    problems = {p["object"]: p for p in result["problems"]}
    assert len(problems) == len(MALFORMED), result
    for name, (_deltas, token, says) in MALFORMED.items():
        reason = problems[f"pvc/{namespace}/{name}"]["reason"]
        assert token in reason and says in reason and len(reason) < 600, reason
        assert not any(internal in reason for internal in INTERNALS), reason


@pytest.mark.usefixtures("rule_crd")
def test_a_rule_with_malformed_deltas_names_the_token(kube, namespace, run):
    kube.create_static_pv_pvc(namespace, "data")
    for name, deltas in (("negative", "PT1H P-1D"), ("huge", "P1D " + "x" * HUGE)):
        kube.custom.create_namespaced_custom_object("k8s-snapshots.elsdoerfer.com", "v1", namespace, "snapshotrules", {
            "apiVersion": "k8s-snapshots.elsdoerfer.com/v1", "kind": "SnapshotRule", "metadata": {"name": name},
            "spec": {"deltas": deltas, "persistentVolumeClaim": "data"}})
    result = run("k8s_pv_info", namespace=namespace, sources=["rule"])
    problems = {p["object"]: p for p in result["problems"]}
    assert problems[f"snapshotrule/{namespace}/negative"]["reason"].startswith("duration 'P-1D' in retention policy 'PT1H P-1D' must be positive")
    huge = problems[f"snapshotrule/{namespace}/huge"]
    assert huge["field"] == "spec.deltas" and f"'{'x' * 64}'\u2026({HUGE} characters) in retention policy 'P1D " in huge["reason"]
    assert f": {HUGE} characters, at most 32; {DELTA_FORM}" in huge["reason"]
    assert size(result) < 4000, size(result)


def test_malformed_policy_options_name_the_option_and_the_token(namespace, run):
    for option, args in (("label_policy", {}), ("policy", {"pvc": "any"})):
        result = run("snapshot_expire", namespace=namespace, **{option: "PT1H P-1D"}, **args)
        assert result["failed"] is True
        assert result["msg"] == f"{option}: duration 'P-1D' in retention policy 'PT1H P-1D' must be positive; {DELTA_FORM}"
        result = run("k8s_pv_snapshot", namespace=namespace, **{option: "P1D " + "y" * HUGE}, **args)
        assert result["msg"].startswith(f"{option}: invalid ISO 8601 duration '{'y' * 64}'\u2026({HUGE} characters)") and size(result) < 4000


def given(namespace, **change):
    """A target as k8s_pv_info returns it, changed; k8s_pv_snapshot checks it before it lists or writes anything."""
    target = {"key": "5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f", "pv": "pv-x", "namespace": namespace, "pvc": "x", "policy": "PT1H P1D",
              "source": "pvc-annotation", "origin": f"pvc/{namespace}/x", "backend": "csi",
              "volume": {"driver": "d", "volume_handle": "h", "snapshot_class": "c"}}
    return dict(target, **change)


def test_a_given_target_says_what_its_volume_lacks_and_is_cut(namespace, run):
    result = run("k8s_pv_snapshot", targets=[given(namespace, volume={})])
    assert result["msg"] == f"targets[0]: target pvc/{namespace}/x: volume: is an empty mapping; the csi backend needs volume.snapshot_class"
    result = run("k8s_pv_snapshot", targets=[given(namespace, origin="o" * HUGE, policy="P1D " + "z" * HUGE)])
    assert result["msg"].startswith("targets[0]: target " + "o" * 64 + f"\u2026({HUGE} characters): origin: ") and size(result) < 4000
