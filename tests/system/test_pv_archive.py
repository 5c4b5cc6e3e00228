# k8s_pv_archive against the real apiserver, CSI stack and job controller. No kubelet runs: the test plays it,
# setting the archive pod's phase (and its container's termination message) through the status subresource, so
# the real job controller completes or fails the Job. The program the Job runs is proven on moto elsewhere.
"""System tests of k8s_pv_archive: the Job and temporary claim as created, cleanup, cycles and slots, failures, check mode."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .cluster_helpers import ADMIN_USER, SNAPSHOT_GROUP, wait_for
from .modules import run_module, with_lease
from . import test_access
from .test_access import documented_rules, lease_rules, run_as

account = test_access.account  # the fixture of a service account with given rules

ACCESS, SECRET = "AKIAKUBESNAPTEST0001", "s3cr3t-never-in-a-spec/abc+xyz"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


@pytest.fixture(scope="session")
def job_controller(cluster):
    """The job controller. A stack started before cluster.py ran it gets one beside its controller-manager, for this session."""
    state = json.loads((Path(cluster.kubeconfig).parent / "state.json").read_text(encoding="utf-8"))
    pid = state["processes"]["kube-controller-manager"]["pid"]
    if b"job-controller" in Path(f"/proc/{pid}/cmdline").read_bytes():
        yield
        return
    log = open(Path(cluster.kubeconfig).parent / "logs" / f"job-controller-{pid}.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen([  # pylint: disable=consider-using-with
        str(Path(state["bin_dir"]) / "kube-controller-manager"),
        f"--kubeconfig={Path(cluster.kubeconfig).parent / 'kubeconfigs' / 'kube-controller-manager.kubeconfig'}",
        "--controllers=job-controller", "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false",
    ], stdout=log, stderr=subprocess.STDOUT)
    yield
    process.terminate()
    process.wait(timeout=20)
    log.close()


@pytest.fixture
def archive(cluster, job_controller, lease_namespace):  # pylint: disable=redefined-outer-name,unused-argument
    """Runs k8s_pv_archive, which takes the cycle's Lease (the snapshot chosen and its claim made under it): in the test's namespace."""
    def call(check=False, **args):
        return run_module("k8s_pv_archive", str(cluster.kubeconfig), check=check, **with_lease("k8s_pv_archive", lease_namespace, args))
    return call


def labelled_claim(kube, namespace, name, annotations=None):
    kube.create_pvc(namespace, name)
    kube.core.patch_namespaced_persistent_volume_claim(name, namespace, {"metadata": {"labels": {"volumeBackup": "yes"},
                                                                                      "annotations": annotations or {}}})


def snapshot_of(cluster, namespace, claim):
    result = run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, pvc=claim, force=True, lease_namespace=namespace)
    assert result["volumes"][0]["state"] == "ready", result
    return result["volumes"][0]["snapshot"]


def jobs(kube, namespace):
    """The Jobs as the API writes them (camelCase dicts)."""
    return kube.api.sanitize_for_serialization(client.BatchV1Api(kube.api).list_namespaced_job(namespace))["items"]


def claims(kube, namespace):
    return {c.metadata.name: c for c in kube.core.list_namespaced_persistent_volume_claim(namespace).items}


def pods_of(kube, namespace, job):
    return kube.core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={job}").items


def play_kubelet(kube, namespace, job, phase, message):
    """End the Job's pod as a kubelet would: phase and the container's termination state, through the status subresource."""
    [pod] = wait_for(f"the pod of Job {job}", lambda: pods_of(kube, namespace, job))
    code = 0 if phase == "Succeeded" else 1
    status = {"phase": phase, "containerStatuses": [{
        "name": "archive", "image": pod.spec.containers[0].image, "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": json.dumps(message)}}}]}
    kube.core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": status})


def wait_job(kube, namespace, timeout=60):
    return wait_for(f"an archive Job in {namespace}", lambda: jobs(kube, namespace), timeout)


def wait_cleaned(kube, namespace, kept=()):
    """No Job, pod, temporary claim or run-made Secret is left (claims go once the garbage collector took the pods)."""
    def clean():
        leftovers = [j["metadata"]["name"] for j in jobs(kube, namespace)]
        leftovers += [p.metadata.name for p in kube.core.list_namespaced_pod(namespace).items]
        leftovers += [name for name in claims(kube, namespace) if name.startswith("archive-")]
        leftovers += [s.metadata.name for s in kube.core.list_namespaced_secret(namespace).items if s.metadata.name not in kept]
        return not leftovers or None
    wait_for(f"the archive objects in {namespace} to be deleted", clean, 60)


def sequence(kube, namespace, claim):
    return (claims(kube, namespace)[claim].metadata.annotations or {}).get("volumeBackupSequence")


def test_check_mode_shows_snapshot_slot_and_key_and_creates_nothing(kube, namespace, cluster, archive, audit):
    labelled_claim(kube, namespace, "data", {"volumeBackupSequence": "6"})  # moved from k8s-pv-util after 6 cycles
    kube.create_pvc(namespace, "other")  # not labelled: not selected
    snapshot = snapshot_of(cluster, namespace, "data")
    audit.mark()
    result = archive(check=True, namespace=namespace, sources=["label"], url="s3://bucket/base/", access_key=ACCESS, secret_key=SECRET)
    assert not result.get("failed") and result["changed"], result
    [volume] = result["volumes"]
    assert (volume["state"], volume["snapshot"], volume["cycle"], volume["slot"]) == ("would_archive", snapshot, 7, 4), volume
    assert volume["object_key"] == f"base/{namespace}/data/4.tar.gz" and volume["url"] == f"s3://bucket/base/{namespace}/data/4.tar.gz"
    assert [audit.count(user=ADMIN_USER, namespace=namespace, verb=verb) for verb in ("create", "patch", "update", "delete")] == [0] * 4
    assert not jobs(kube, namespace) and set(claims(kube, namespace)) == {"data", "other"}
    assert sequence(kube, namespace, "data") == "6"
    # Names carry the second they were taken in; a run within the snapshot's own second would name the same one (a real
    # create then adds a suffix, which the preview does not foresee).
    wait_for("the second after the snapshot's", lambda: datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S") > snapshot.rsplit("-", 1)[1],
             timeout=5, interval=0.05)
    create = archive(check=True, namespace=namespace, pvc="data", snapshot="create", url="s3://bucket")
    assert create["volumes"][0]["snapshot"].startswith("data-") and create["volumes"][0]["snapshot"] != snapshot, create
    assert create["volumes"][0]["object_key"] == f"{namespace}/data/4.tar.gz", create


def test_a_successful_archive_runs_the_job_as_specified_cleans_up_and_advances_the_cycle(kube, namespace, cluster, archive, audit):
    labelled_claim(kube, namespace, "data")
    snapshot = snapshot_of(cluster, namespace, "data")
    args = {"namespace": namespace, "sources": ["label"], "url": "s3://bucket/base", "access_key": ACCESS, "secret_key": SECRET,
            "endpoint_url": "http://minio.example:9000", "s3_path_style": True, "image": "registry.example/kubesnap-ee:1", "job_timeout": 300}
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(archive, **args)
        [job] = wait_job(kube, namespace)
        name = job["metadata"]["name"]
        # The temporary claim from the snapshot and the run's Secret exist, owned by the Job, before the pod ends.
        temporary = wait_for("the temporary claim", lambda: claims(kube, namespace).get(name))
        secret = wait_for("the run's Secret", lambda: {s.metadata.name: s for s in kube.core.list_namespaced_secret(namespace).items}.get(name))
        play_kubelet(kube, namespace, name, "Succeeded", {"failed": False, "bytes": 4242, "msg": "", "sha256": "5e" * 32})
        result = running.result(timeout=120)
    assert not result.get("failed"), result
    # The Job was created suspended and started (a patch) only once its claim and Secret existed; all three share its name.
    writes = [(e["verb"], e["objectRef"]["resource"]) for e in audit.events(user=ADMIN_USER, namespace=namespace, name=name)
              if e["verb"] in ("create", "patch")]
    started = writes.index(("patch", "jobs"))
    assert writes[0] == ("create", "jobs") and started > max(writes.index(("create", "persistentvolumeclaims")), writes.index(("create", "secrets"))), writes
    [volume] = result["volumes"]
    assert (volume["state"], volume["cycle"], volume["slot"], volume["bytes"], volume["job"]) == ("archived", 1, 2, 4242, name), volume
    assert volume["object_key"] == f"base/{namespace}/data/2.tar.gz" and volume["snapshot"] == snapshot and volume["seconds"] > 0
    assert volume["sha256"] == "5e" * 32
    recorded = claims(kube, namespace)["data"].metadata.annotations["kubesnap.io/archive-sha256"]
    assert recorded == f"s3://bucket/base/{namespace}/data/2.tar.gz {'5e' * 32}"

    source = temporary.spec.data_source
    assert (source.api_group, source.kind, source.name) == (SNAPSHOT_GROUP, "VolumeSnapshot", snapshot)
    assert temporary.spec.storage_class_name == claims(kube, namespace)["data"].spec.storage_class_name
    for owned in (temporary, secret):
        assert [(o.kind, o.name, o.uid) for o in owned.metadata.owner_references] == [("Job", name, job["metadata"]["uid"])]
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 300 and pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["image"] == "registry.example/kubesnap-ee:1" and container["command"][:2] == ["python3", "-c"]
    given = json.loads(container["command"][3])
    assert given["url"] == f"s3://bucket/base/{namespace}/data/2.tar.gz" and given["path"] == "/snapshot"
    assert (given["endpoint_url"], given["s3_path_style"], given["snapshot"], given["cycle"], given["slot"]) == (
        "http://minio.example:9000", True, snapshot, 1, 2)
    assert {"name": "data", "persistentVolumeClaim": {"claimName": name, "readOnly": True}} in pod["volumes"]
    # Credentials only by reference: nowhere in the Job, in the Secret's data only.
    assert ACCESS not in json.dumps(job) and SECRET not in json.dumps(job)
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert refs == {"AWS_ACCESS_KEY_ID": name, "AWS_SECRET_ACCESS_KEY": name, "AWS_SESSION_TOKEN": name}
    assert ACCESS not in json.dumps(result) and SECRET not in json.dumps(result)

    wait_cleaned(kube, namespace)
    assert sequence(kube, namespace, "data") == "1"

    # The next cycle continues the rotation: cycle 2 is slot 1 (Hanoi), the key follows.
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(archive, **args)
        [job] = wait_job(kube, namespace)
        play_kubelet(kube, namespace, job["metadata"]["name"], "Succeeded", {"failed": False, "bytes": 1})
        second = running.result(timeout=120)
    assert (second["volumes"][0]["cycle"], second["volumes"][0]["slot"]) == (2, 1), second
    assert second["volumes"][0]["object_key"] == f"base/{namespace}/data/1.tar.gz" and job["metadata"]["name"] != name
    wait_cleaned(kube, namespace)
    assert sequence(kube, namespace, "data") == "2"


def test_one_failing_archive_does_not_stop_the_others_and_only_successes_advance(kube, namespace, cluster, archive):
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "s3cfg"}, "stringData": {"s3cfg": "[default]\naccess_key = x\n"}})
    labelled_claim(kube, namespace, "bad")
    labelled_claim(kube, namespace, "good", {"kubesnap.io/archive-url": f"s3://bucket/{namespace}/team"})
    labelled_claim(kube, namespace, "nosnap")
    labelled_claim(kube, namespace, "nowhere")
    kube.core.patch_namespaced_persistent_volume_claim("nowhere", namespace, {"metadata": {"labels": {"volumeBackup": "other"}}})
    for claim in ("bad", "good"):
        snapshot_of(cluster, namespace, claim)
    args = {"namespace": namespace, "sources": ["label"], "label_value": "yes", "url": "s3://bucket", "credentials_secret": "s3cfg",
            "job_timeout": 300}
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(archive, **args)
        found = wait_for("two archive Jobs", lambda: len(jobs(kube, namespace)) == 2 and jobs(kube, namespace))
        by_claim = {j["metadata"]["name"].split("-c1-")[0].removeprefix("archive-"): j for j in found}
        for job in found:  # the user's Secret, by reference; no Secret of the run's own
            pod = job["spec"]["template"]["spec"]
            assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {"s3cfg"}
            assert {e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0]["env"]} == {"s3cfg"}
        play_kubelet(kube, namespace, by_claim["bad"]["metadata"]["name"], "Failed", {"failed": True, "msg": "AccessDenied on PutObject"})
        play_kubelet(kube, namespace, by_claim["good"]["metadata"]["name"], "Succeeded", {"failed": False, "bytes": 7})
        result = running.result(timeout=120)
    assert result.get("failed"), result
    volumes = {v["pvc"]: v for v in result["volumes"]}
    assert set(volumes) == {"bad", "good", "nosnap"}, result  # "nowhere" has another label value
    assert volumes["good"]["state"] == "archived" and volumes["good"]["url"] == f"s3://bucket/{namespace}/team/{namespace}/good/2.tar.gz"
    assert volumes["bad"]["state"] == "failed" and "AccessDenied on PutObject" in volumes["bad"]["reason"], volumes["bad"]
    assert volumes["nosnap"]["state"] == "failed" and "no ready snapshot" in volumes["nosnap"]["reason"]
    assert sorted(line.split(":")[0] for line in result["failed_volumes"]) == [f"{namespace}/bad", f"{namespace}/nosnap"], result
    wait_cleaned(kube, namespace, kept=("s3cfg",))
    assert (sequence(kube, namespace, "good"), sequence(kube, namespace, "bad"), sequence(kube, namespace, "nosnap")) == ("1", None, None)
    kube.core.read_namespaced_secret("s3cfg", namespace)  # the user's Secret is never deleted


def test_a_job_that_never_finishes_is_failed_by_its_deadline_and_cleaned_up(kube, namespace, cluster, archive):
    labelled_claim(kube, namespace, "data")
    snapshot_of(cluster, namespace, "data")
    result = archive(namespace=namespace, sources=["label"], url="s3://bucket", job_timeout=3)
    assert result.get("failed"), result
    [volume] = result["volumes"]
    assert volume["state"] == "failed" and "DeadlineExceeded" in volume["reason"], volume
    wait_cleaned(kube, namespace)
    assert sequence(kube, namespace, "data") is None


def test_bad_destinations_fail_their_volume_naming_the_field(kube, namespace, cluster, archive):
    labelled_claim(kube, namespace, "dots", {"kubesnap.io/archive-url": "s3://bucket/a/../b"})
    snapshot_of(cluster, namespace, "dots")
    result = archive(namespace=namespace, sources=["label"])
    assert result.get("failed") and "metadata.annotations[kubesnap.io/archive-url]" in result["msg"], result
    assert not jobs(kube, namespace)
    with pytest.raises(ApiException):
        kube.core.read_namespaced_secret("anything", namespace)
    # A claim's annotation may not leave the url base, nor reach into another namespace's folder under it.
    for claim, url in (("elsewhere", "s3://other-bucket/x"), ("neighbour", "s3://bucket/base/kube-system/data")):
        labelled_claim(kube, namespace, claim, {"kubesnap.io/archive-url": url})
        snapshot_of(cluster, namespace, claim)
    outside = archive(namespace=namespace, sources=["label"], url="s3://bucket/base")
    reasons = {v["pvc"]: v["reason"] for v in outside["volumes"]}
    for claim in ("elsewhere", "neighbour"):
        assert f"pvc/{namespace}/{claim}: metadata.annotations[kubesnap.io/archive-url]: " in reasons[claim], reasons
        assert f"is outside the base s3://bucket/base: a claim may name only the base or a prefix under s3://bucket/base/{namespace}/" \
            in reasons[claim], reasons
    assert not jobs(kube, namespace)
    bad_option = archive(namespace=namespace, url="http://bucket")
    assert bad_option.get("failed") and "url: " in bad_option["msg"] and "s3://" in bad_option["msg"], bad_option


def test_the_documented_rules_are_enough_to_archive_with_snapshot_create(kube, namespace, account, audit, job_controller):  # noqa: F811 - account is test_access.py's fixture
    env = account(documented_rules() + documented_rules("kubesnap-archive"), lease_rules())
    labelled_claim(kube, namespace, "data")
    audit.mark()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_as, env, "k8s_pv_archive", namespace=namespace, sources=["label"], url="s3://bucket", snapshot="create",
                              lease_namespace=namespace, access_key=ACCESS, secret_key=SECRET)
        [job] = wait_job(kube, namespace)
        play_kubelet(kube, namespace, job["metadata"]["name"], "Succeeded", {"failed": False, "bytes": 3})
        result = running.result(timeout=120)
    assert not result.get("failed"), result
    [volume] = result["volumes"]
    assert volume["state"] == "archived" and volume["snapshot"].startswith("data-") and volume["bytes"] == 3, volume
    assert job["metadata"]["annotations"]["kubesnap.io/snapshot"] == volume["snapshot"]
    wait_cleaned(kube, namespace)
    assert sequence(kube, namespace, "data") == "1"
    user = f"system:serviceaccount:{namespace}:kubesnap"
    refused = [e for e in audit.events(user=user) if e["responseStatus"]["code"] == 403]
    assert not refused and audit.count(user=user, verb="create", resource="jobs") == 1, refused


def test_a_temporary_claim_that_cannot_be_created_fails_the_volume_and_deletes_its_job(kube, namespace, cluster, archive):
    labelled_claim(kube, namespace, "data")
    snapshot_of(cluster, namespace, "data")
    # A quota already used up (no quota controller runs here: its status is written as that controller would).
    kube.core.create_namespaced_resource_quota(namespace, {"metadata": {"name": "claims"}, "spec": {"hard": {"persistentvolumeclaims": "1"}}})
    kube.core.patch_namespaced_resource_quota_status("claims", namespace, {"status": {"hard": {"persistentvolumeclaims": "1"},
                                                                                      "used": {"persistentvolumeclaims": "1"}}})
    result = archive(namespace=namespace, sources=["label"], url="s3://bucket", access_key=ACCESS, secret_key=SECRET)
    assert result.get("failed"), result
    [volume] = result["volumes"]
    assert volume["state"] == "failed" and "creating the claim" in volume["reason"] and "exceeded quota" in volume["reason"], volume
    assert volume["reason"].endswith("the Job and what was made for it were deleted"), volume
    wait_cleaned(kube, namespace)
    assert sequence(kube, namespace, "data") is None


def test_a_named_credentials_secret_that_is_missing_fails_the_volume_before_any_job(kube, namespace, cluster, archive, audit):
    labelled_claim(kube, namespace, "data")
    snapshot_of(cluster, namespace, "data")
    audit.mark()
    result = archive(namespace=namespace, sources=["label"], url="s3://bucket", credentials_secret="s3-creds")
    assert result.get("failed"), result
    [volume] = result["volumes"]
    assert volume["state"] == "failed" and volume["reason"] == f"credentials_secret: Secret {namespace}/s3-creds does not exist; no Job was created"
    # Nothing created in the namespace but the run's Lease (taken there: lease_namespace).
    created = [e["objectRef"] for e in audit.events(user=ADMIN_USER, namespace=namespace, verb="create") if e["objectRef"]["resource"] != "leases"]
    assert created == [] and not jobs(kube, namespace), created


def test_credentials_in_the_controllers_environment_are_never_shipped_into_the_namespace(kube, namespace, cluster, archive):
    labelled_claim(kube, namespace, "data")
    snapshot_of(cluster, namespace, "data")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_module, "k8s_pv_archive", str(cluster.kubeconfig), env=env, namespace=namespace, sources=["label"],
                              url="s3://bucket", job_timeout=300, lease_namespace=namespace)
        [job] = wait_job(kube, namespace)
        name = job["metadata"]["name"]
        wait_for("the temporary claim", lambda: claims(kube, namespace).get(name))
        pod = job["spec"]["template"]["spec"]
        assert not pod["containers"][0].get("env") and not [v for v in pod["volumes"] if "secret" in v], pod
        assert not [s.metadata.name for s in kube.core.list_namespaced_secret(namespace).items if s.metadata.name == name]
        play_kubelet(kube, namespace, name, "Succeeded", {"failed": False, "bytes": 1})
        result = running.result(timeout=120)
    assert not result.get("failed") and ACCESS not in json.dumps(result), result
    wait_cleaned(kube, namespace)


def module_requests(audit, **filters):
    """Requests of this test's module runs only: other tests run beside it with their own user agents."""
    return audit.module_events(user=ADMIN_USER, **filters)


def test_selected_volumes_without_a_destination_fail_naming_them(kube, namespace, cluster, archive):
    labelled_claim(kube, namespace, "data")
    snapshot_of(cluster, namespace, "data")
    result = archive(namespace=namespace, sources=["label"], lease_namespace=namespace)
    assert result.get("failed") and f"{namespace}/data: no archive destination: no url option" in result["msg"], result
    assert [(v["pvc"], v["state"]) for v in result["volumes"]] == [("data", "failed")]
    assert result["failed_volumes"][0].startswith(f"{namespace}/data: no archive destination")
    assert not jobs(kube, namespace)
    # Nothing selected and no url: nothing could ever be archived, which is said, not reported as success.
    nothing = archive(namespace=namespace, sources=["label"], label_value="no-such-value", lease_namespace=namespace)
    assert nothing.get("failed") and nothing["msg"].startswith("url: not given, so no volume can be archived"), nothing


def test_one_list_and_one_watch_serve_every_volume_of_a_namespace(kube, namespace, cluster, archive, audit):
    names = ("a", "b", "c")
    for claim in names:
        labelled_claim(kube, namespace, claim)
        snapshot_of(cluster, namespace, claim)
    audit.mark()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(archive, namespace=namespace, sources=["label"], url="s3://bucket", job_timeout=300, lease_namespace=namespace)
        found = wait_for("three archive Jobs", lambda: len(jobs(kube, namespace)) == 3 and jobs(kube, namespace))
        for job in found:
            play_kubelet(kube, namespace, job["metadata"]["name"], "Succeeded", {"failed": False, "bytes": 1})
        result = running.result(timeout=120)
    assert not result.get("failed") and [v["state"] for v in result["volumes"]] == ["archived"] * 3, result
    waits = [(e["verb"], e["objectRef"]["resource"]) for e in module_requests(audit, namespace=namespace)
             if e["verb"] in ("list", "watch") and e["objectRef"]["resource"] in ("jobs", "pods")]
    assert waits.count(("list", "jobs")) == 1 and waits.count(("watch", "jobs")) <= 1 and waits.count(("list", "pods")) == 1, waits
    wait_cleaned(kube, namespace)


def test_the_snapshot_is_chosen_and_its_claim_made_under_the_lease(kube, namespace, cluster, archive, audit):
    labelled_claim(kube, namespace, "data")
    snapshot_of(cluster, namespace, "data")
    leases = client.CoordinationV1Api(kube.api)
    renewed = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    leases.create_namespaced_lease(namespace, {"metadata": {"name": "cycle"}, "spec": {
        "holderIdentity": "expiry-run", "leaseDurationSeconds": 600, "renewTime": renewed}})
    held = archive(namespace=namespace, sources=["label"], url="s3://bucket", lease_namespace=namespace, lease_name="cycle")
    assert held.get("failed") and "expiry-run" in held["lease_held"], held
    assert [v["state"] for v in held["volumes"]] == ["failed"] and "no archive started" in held["volumes"][0]["reason"]
    assert not jobs(kube, namespace)
    leases.delete_namespaced_lease("cycle", namespace)
    audit.mark()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(archive, namespace=namespace, sources=["label"], url="s3://bucket", job_timeout=300,
                              lease_namespace=namespace, lease_name="cycle")
        [job] = wait_job(kube, namespace)
        play_kubelet(kube, namespace, job["metadata"]["name"], "Succeeded", {"failed": False, "bytes": 1})
        result = running.result(timeout=120)
    assert not result.get("failed"), result
    watched = (("create", "leases"), ("list", "volumesnapshots"), ("create", "persistentvolumeclaims"),
               ("delete", "leases"), ("update", "leases"), ("patch", "leases"))
    calls = [(e["verb"], e.get("objectRef", {}).get("resource")) for e in module_requests(audit)]
    order = [call for call in calls if call in watched]
    taken, claimed = order.index(("create", "leases")), order.index(("create", "persistentvolumeclaims"))
    released = max(i for i, call in enumerate(order) if call[1] == "leases" and call[0] in ("delete", "update", "patch"))
    assert ("list", "volumesnapshots") in order[taken:claimed] and claimed < released, order
    wait_cleaned(kube, namespace)
