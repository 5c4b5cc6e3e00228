# playbooks/restore.yml through ansible-playbook on the local control plane. No kubelet and no workload controllers run
# here: the Deployments and StatefulSets are objects only, and the scale-down, the swap and the scale-back are checked on them.
"""System tests of the in-place restore playbook (and k8s_workload_scale)."""

from __future__ import annotations

import json

from kubernetes import client

from .modules import run_module
from .playbooks import ansible_playbook, module_interpreter

HOLD = "kubesnap.io/hold"
RESTORED_FROM = "kubesnap.io/restored-from"


def play(cluster, namespace, claim, **extra_vars):
    extra = {"restore_kubeconfig": str(cluster.kubeconfig), "restore_namespace": namespace, "restore_claim": claim,
             "restore_lease_namespace": namespace, "ansible_python_interpreter": module_interpreter(), **extra_vars}
    return ansible_playbook("-i", "localhost,", "-e", json.dumps(extra), "kubesnap.snapshots.restore")


def pod_template(claim):
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "busybox"}],
                                                             "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}


def deployment(kube, namespace, claim, replicas=2):
    apps = client.AppsV1Api(kube.api)
    apps.create_namespaced_deployment(namespace, {"metadata": {"name": "web"}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template(claim)}})
    return lambda: apps.read_namespaced_deployment("web", namespace)


def owned_snapshot(cluster, namespace, claim):
    result = run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, pvc=claim, force=True, lease_namespace=namespace)
    assert result["volumes"][0]["state"] == "ready", result
    return result["volumes"][0]["snapshot"]


def snapshots(kube, namespace):
    return {s["metadata"]["name"]: s for s in kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace,
                                                                                        "volumesnapshots")["items"]}


def module_patches(audit, namespace, resource):
    return audit.module_events(verb="patch", resource=resource, namespace=namespace)


def test_a_deployment_is_scaled_down_swapped_to_the_restored_claim_and_scaled_back(kube, cluster, namespace, audit):
    kube.create_pvc(namespace, "data")
    chosen = owned_snapshot(cluster, namespace, "data")
    web = deployment(kube, namespace, "data")
    audit.mark()
    process = play(cluster, namespace, "data")
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    after = web()
    [volume] = after.spec.template.spec.volumes
    restored = volume.persistent_volume_claim.claim_name
    assert restored.startswith("data-restore-") and after.spec.replicas == 2
    assert "kubesnap.io/restore-replicas" not in (after.metadata.annotations or {})
    claim = kube.core.read_namespaced_persistent_volume_claim(restored, namespace)
    assert claim.status.phase == "Bound" and claim.spec.data_source.name == chosen
    # Scaled to zero, then back with the swap: two patches of the Deployment.
    assert len(module_patches(audit, namespace, "deployments")) == 2
    # The safety snapshot: owned, held, ready; the old claim is untouched.
    [safety] = [s for name, s in snapshots(kube, namespace).items() if name != chosen]
    assert safety["metadata"]["labels"][HOLD] == "true" and safety["status"]["readyToUse"] is True
    assert f"safety snapshot (held): {safety['metadata']['name']}" in process.stdout
    assert kube.core.read_namespaced_persistent_volume_claim("data", namespace).status.phase == "Bound"


def test_a_statefulset_claim_template_claim_is_recreated_from_the_snapshot(kube, cluster, namespace):
    kube.create_pvc(namespace, "data-db-0")
    old_uid = kube.core.read_namespaced_persistent_volume_claim("data-db-0", namespace).metadata.uid
    chosen = owned_snapshot(cluster, namespace, "data-db-0")
    apps = client.AppsV1Api(kube.api)
    template = {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "busybox",
                                                                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}
    apps.create_namespaced_stateful_set(namespace, {"metadata": {"name": "db"}, "spec": {
        "replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template,
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                                         "resources": {"requests": {"storage": "1Mi"}}}}]}})
    process = play(cluster, namespace, "data-db-0")
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    claim = kube.core.read_namespaced_persistent_volume_claim("data-db-0", namespace)
    assert claim.metadata.uid != old_uid and claim.status.phase == "Bound"
    assert claim.spec.data_source.name == chosen and claim.metadata.annotations[RESTORED_FROM] == f"csi:{namespace}/{chosen}"
    assert apps.read_namespaced_stateful_set("db", namespace).spec.replicas == 1
    assert any(s["metadata"]["labels"].get(HOLD) == "true" for s in snapshots(kube, namespace).values())


def test_a_failure_after_the_scale_down_scales_back_without_the_swap(kube, cluster, namespace, csi_faults):
    kube.create_pvc(namespace, "data")
    owned_snapshot(cluster, namespace, "data")
    web = deployment(kube, namespace, "data", replicas=3)
    csi_faults.fail("CreateVolume", count=1000, message="no capacity")  # the restored claim never binds
    process = play(cluster, namespace, "data", restore_timeout=3)
    assert process.returncode != 0
    assert "failed at 'Restore into a new claim'" in process.stdout and "the workloads were scaled back" in process.stdout, process.stdout[-4000:]
    after = web()
    assert after.spec.replicas == 3 and after.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == "data"
    assert "kubesnap.io/restore-replicas" not in (after.metadata.annotations or {})


def test_a_claim_mounted_by_a_pod_it_does_not_control_is_refused(kube, cluster, namespace):
    kube.create_pvc(namespace, "data")
    owned_snapshot(cluster, namespace, "data")
    web = deployment(kube, namespace, "data")
    kube.core.create_namespaced_pod(namespace, {"metadata": {"name": "debug-shell"}, "spec": pod_template("data")["spec"]})
    process = play(cluster, namespace, "data")
    assert process.returncode != 0
    assert f"claim {namespace}/data is mounted by pods not controlled by a Deployment or StatefulSet that mounts it: debug-shell" in process.stdout
    assert web().spec.replicas == 2  # nothing was scaled
    # Told to, it goes on (the pod is the user's to stop).
    forced = run_module("k8s_workload_scale", str(cluster.kubeconfig), check=True, namespace=namespace, claim="data", force=True)
    assert forced["changed"] is True and forced["foreign_pods"] == ["debug-shell"] and forced["workloads"] == [
        {"kind": "Deployment", "name": "web", "mount": "volume", "replicas": 2}]


def pod_of_web(kube, namespace, name, claim, phase=None, reason=None):
    """A pod of Deployment web as its controllers would make it (none runs here): through a ReplicaSet it controls."""
    apps = client.AppsV1Api(kube.api)
    web = apps.read_namespaced_deployment("web", namespace)
    try:
        replica_set = apps.read_namespaced_replica_set("web-1", namespace)
    except client.ApiException:
        replica_set = apps.create_namespaced_replica_set(namespace, {
            "metadata": {"name": "web-1", "labels": {"app": "web"}, "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": web.metadata.uid, "controller": True}]},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template(claim)}})
    kube.core.create_namespaced_pod(namespace, {"metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": replica_set.metadata.uid, "controller": True}]},
        "spec": pod_template(claim)["spec"]})
    if phase:
        kube.core.patch_namespaced_pod_status(name, namespace, {"status": {"phase": phase, "reason": reason}})


def test_finished_pods_of_the_workload_are_not_waited_for(kube, cluster, namespace):
    kube.create_pvc(namespace, "data")
    web = deployment(kube, namespace, "data")
    pod_of_web(kube, namespace, "web-done", "data", "Succeeded")
    pod_of_web(kube, namespace, "web-evicted", "data", "Failed", "Evicted")
    result = run_module("k8s_workload_scale", str(cluster.kubeconfig), namespace=namespace, claim="data", wait_timeout=3)
    assert not result.get("failed") and result["changed"], result
    assert web().spec.replicas == 0


def test_a_scale_down_that_fails_scales_back(kube, cluster, namespace):
    kube.create_pvc(namespace, "data")
    owned_snapshot(cluster, namespace, "data")
    web = deployment(kube, namespace, "data", replicas=3)
    pod_of_web(kube, namespace, "web-stuck", "data")  # no kubelet stops it: the wait for the unmount times out
    process = play(cluster, namespace, "data", restore_timeout=3)
    assert process.returncode != 0
    assert "failed at 'Scale the workloads that mount the claim to zero'" in process.stdout, process.stdout[-4000:]
    assert "pods still mount claim" in process.stdout and "the workloads were scaled back" in process.stdout, process.stdout[-4000:]
    after = web()
    assert after.spec.replicas == 3 and "kubesnap.io/restore-replicas" not in (after.metadata.annotations or {})


def test_a_statefulset_that_deletes_its_claims_when_scaled_is_refused(kube, cluster, namespace):
    kube.create_pvc(namespace, "data-db-0")
    apps = client.AppsV1Api(kube.api)
    template = {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "busybox"}]}}
    apps.create_namespaced_stateful_set(namespace, {"metadata": {"name": "db"}, "spec": {
        "replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template,
        "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                                         "resources": {"requests": {"storage": "1Mi"}}}}]}})
    assert apps.read_namespaced_stateful_set("db", namespace).spec.persistent_volume_claim_retention_policy.when_scaled == "Delete"
    result = run_module("k8s_workload_scale", str(cluster.kubeconfig), namespace=namespace, claim="data-db-0")
    assert result.get("failed") and "StatefulSet db: spec.persistentVolumeClaimRetentionPolicy.whenScaled is Delete" in result["msg"], result
    assert result["workloads"] == [] and apps.read_namespaced_stateful_set("db", namespace).spec.replicas == 1


def test_a_bad_restore_replicas_annotation_is_named(kube, cluster, namespace):
    kube.create_pvc(namespace, "data")
    web = deployment(kube, namespace, "data")
    client.AppsV1Api(kube.api).patch_namespaced_deployment("web", namespace, {"metadata": {"annotations": {
        "kubesnap.io/restore-replicas": "lots"}}})
    result = run_module("k8s_workload_scale", str(cluster.kubeconfig), namespace=namespace, claim="data")
    assert result.get("failed") and "Deployment web: metadata.annotations[kubesnap.io/restore-replicas]: 'lots' is not a replica count" \
        in result["msg"], result
    assert "Traceback" not in json.dumps(result) and web().spec.replicas == 2
