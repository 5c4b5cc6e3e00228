#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark one snapshot cycle (discover, create, wait until ready) on the local control plane.

Run from the repository root:  .cache/venv/bin/python bench/cycle.py [--volumes 200] [--controllers fast|default] [--quick]

Three variants, each on a fresh namespace of N PVCs annotated backup.kubernetes.io/deltas, in the same run on the
same stack (tests/cluster/cluster.py, started or reused; restarted only when --controllers differs):

  ours   ansible-playbook with one kubesnap.snapshots.k8s_pv_snapshot task (namespace = the bench namespace).
  loop   the job as users write it today with the `ansible` package's kubernetes.core: k8s_info to list the PVCs,
         k8s in a loop to create a VolumeSnapshot per annotated PVC, k8s_info with `until` per snapshot to wait
         (ansible-core and kubernetes.core from a bench-only virtualenv, .cache/bench-venv, created if missing).
  floor  in-process kubernetes client: one list, the creates from a pool of 20 threads, one watch until all are ready.

Each is timed from its start (the ansible-playbook process start for ours and loop) until every snapshot is
readyToUse. Requests are counted from the apiserver's audit log: the admin user's requests in the variant's window,
in its namespace or cluster-scoped, made with the variant's user agent. --sample N runs the loop on N PVCs only and
scales its time and requests linearly to --volumes (--quick = --sample 20); the default runs the whole loop.
A benchmark reports: it exits 0 whatever the ratios, and non-zero only on errors (snapshots not ready, a failed run).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".cache" / "venv" / "bin" / "python"
COLLECTIONS = ROOT / ".cache" / "collections"
BENCH_VENV = ROOT / ".cache" / "bench-venv"
# kubernetes 37.0.2 makes pip backtrack for minutes; the `ansible` 12.x package goes with ansible-core 2.19.
BENCH_REQUIREMENTS = ("ansible>=12,<13", "kubernetes==37.0.1")

ANNOTATION = "backup.kubernetes.io/deltas"
POLICY = "PT1H P1D"
SNAPSHOT_GROUP, SNAPSHOT_VERSION, SNAPSHOTS = "snapshot.storage.k8s.io", "v1", "volumesnapshots"
WAIT_TIMEOUT = 900  # seconds for any one wait: binding, a variant's snapshots, cleanup
WORKERS = 20

OURS_AGENT = "kubesnap.snapshots"  # the collection's client always sends it
LOOP_AGENT = "OpenAPI-Generator/37.0.1/python"  # kubernetes.core's client: the kubernetes package's default
FLOOR_AGENT = "kubesnap-bench/floor"
HELPER_AGENT = "kubesnap-bench/helper"  # setup, observer and cleanup: never counted

GOAL_LOOP_OVER_OURS = 20.0
GOAL_OURS_OVER_FLOOR = 1.5


def load_script(name: str, path: Path):
    """Import a file that is not in a package (cluster.py, the system tests' helpers)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLUSTER = load_script("kubesnap_bench_cluster", ROOT / "tests" / "cluster" / "cluster.py")
HELPERS = load_script("kubesnap_bench_cluster_helpers", ROOT / "tests" / "system" / "cluster_helpers.py")


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to (a failed run, snapshots not ready)."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# ---------------------------------------------------------------- environment


def ensure_cluster(controllers: str) -> dict:
    """Start or reuse the stack; restart it (down, then up) only when its controller setting differs."""
    script = [str(VENV_PYTHON), str(CLUSTER.__file__)]
    state = CLUSTER.load_state()
    if CLUSTER.healthy(state) and state.get("controllers") != controllers:
        log(f"the running stack has --controllers={state.get('controllers')}: restarting it with {controllers}")
        subprocess.run([*script, "down"], check=True)
    subprocess.run([*script, "up", "--controllers", controllers], check=True)
    state = CLUSTER.load_state()
    if state.get("controllers") != controllers:
        raise BenchError(f"the stack runs --controllers={state.get('controllers')}, not {controllers}")
    return state


def ensure_collection_link() -> None:
    link = COLLECTIONS / "ansible_collections" / "kubesnap" / "snapshots"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT)


def ensure_bench_venv() -> Path:
    """The `ansible` package (kubernetes.core inside) in its own virtualenv; reused when its marker matches."""
    python = BENCH_VENV / "bin" / "python"
    marker = BENCH_VENV / ".bench-installed"
    wanted = "\n".join(BENCH_REQUIREMENTS) + "\n"
    if marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        return BENCH_VENV
    if not python.exists():
        log(f"creating {BENCH_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    log(f"installing {' '.join(BENCH_REQUIREMENTS)} into {BENCH_VENV} (a minute the first time)")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *BENCH_REQUIREMENTS], check=True)
    marker.write_text(wanted, encoding="utf-8")
    return BENCH_VENV


def bench_collections_path(venv: Path) -> str:
    """The bench venv's site-packages: its ansible_collections/ holds the `ansible` package's collections."""
    found = sorted(venv.glob("lib/python*/site-packages/ansible_collections"))
    if not found:
        raise BenchError(f"no ansible_collections in {venv}")
    return str(found[0].parent)


def active_faults(path: Path) -> dict:
    """The mock driver's fault sets that do something, by scope ("*" or a namespace), read as the driver reads the file."""
    try:
        scopes = CLUSTER.fault_scopes(path.read_text(encoding="utf-8"))
    except OSError:
        return {}
    except ValueError as exc:
        return {"?": f"{path} is unreadable, the driver keeps its previous faults: {exc}"}
    return {scope: faults for scope, faults in scopes.items()
            if faults.get("ready_delay_seconds") or faults.get("fail") or faults.get("latency_ms")}


def api_client(kubeconfig: Path, user_agent: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = WORKERS + 4
    api = client.ApiClient(configuration)
    api.user_agent = user_agent
    return api


# ---------------------------------------------------------------- namespaces


def create_namespace(core: client.CoreV1Api, namespace: str, count: int, storage_class: str) -> None:
    """A namespace with `count` annotated 1Mi PVCs, created in parallel; returns once all are Bound."""
    core.create_namespace({"metadata": {"name": namespace, "labels": {"kubesnap.io/bench": "cycle"}}})

    def create(index: int) -> None:
        spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}, "storageClassName": storage_class}
        body = {"metadata": {"name": f"data-{index:04d}", "annotations": {ANNOTATION: POLICY}}, "spec": spec}
        core.create_namespaced_persistent_volume_claim(namespace, body)

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(create, range(count)))

    def bound() -> bool:
        items = core.list_namespaced_persistent_volume_claim(namespace).items
        return sum(pvc.status.phase == "Bound" for pvc in items) == count

    HELPERS.wait_for(f"{count} PVCs in {namespace} to bind", bound, WAIT_TIMEOUT, interval=0.5)


def delete_namespaces(custom: client.CustomObjectsApi, core: client.CoreV1Api, namespaces: list) -> None:
    """VolumeSnapshots first (the mock driver frees them), then the namespaces with their PVCs."""
    for namespace in namespaces:
        custom.delete_collection_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, SNAPSHOTS)

    def snapshots_gone() -> bool:
        return all(not list_snapshots(custom, namespace) for namespace in namespaces)

    HELPERS.wait_for("the bench VolumeSnapshots to be deleted", snapshots_gone, WAIT_TIMEOUT, interval=0.5)
    for namespace in namespaces:
        try:
            core.delete_namespace(namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise


def list_snapshots(custom: client.CustomObjectsApi, namespace: str) -> list:
    return custom.list_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, SNAPSHOTS)["items"]


def count_ready(custom: client.CustomObjectsApi, namespace: str) -> int:
    return sum(bool((item.get("status") or {}).get("readyToUse")) for item in list_snapshots(custom, namespace))


def settle(audit, controller_users: list, quiet: float = 1.0, limit: float = 15.0) -> None:
    """Let the controllers finish the previous step's work: no request from them for `quiet` seconds (at most `limit`)."""
    deadline = time.monotonic() + limit
    audit.mark()
    last_seen = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        if any(event["user"].get("username") in controller_users for event in audit.events()):
            audit.mark()
            last_seen = time.monotonic()
        elif time.monotonic() - last_seen >= quiet:
            return


# ---------------------------------------------------------------- watching


def watch_until_ready(custom: client.CustomObjectsApi, namespace: str, count: int, timeout: float) -> dict:
    """One watch on the namespace's VolumeSnapshots until `count` are readyToUse: {name: wall-clock time first seen ready}."""
    ready = {}
    stream = watch.Watch()
    for event in stream.stream(custom.list_namespaced_custom_object, SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, SNAPSHOTS,
                               timeout_seconds=int(timeout)):
        snapshot = event["object"]
        name = snapshot["metadata"]["name"]
        if (snapshot.get("status") or {}).get("readyToUse") and name not in ready:
            ready[name] = time.time()
            if len(ready) >= count:
                stream.stop()
    return ready


class Observer(threading.Thread):
    """Records when each snapshot of a namespace turns ready while a playbook runs (its own user agent: not counted)."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str, count: int):
        super().__init__(daemon=True)
        self.custom, self.namespace, self.count = custom, namespace, count
        self.ready = {}

    def run(self) -> None:
        try:
            self.ready = watch_until_ready(self.custom, self.namespace, self.count, WAIT_TIMEOUT)
        except Exception as exc:  # pylint: disable=broad-except  # the observer only annotates the report
            log(f"observer of {self.namespace} failed: {exc}")

    def all_ready_at(self, wall_start: float) -> float | None:
        """Seconds from wall_start until the last snapshot turned ready, if all did."""
        self.join(timeout=10)
        return max(self.ready.values()) - wall_start if len(self.ready) >= self.count else None


# ---------------------------------------------------------------- variants

OURS_PLAYBOOK = """\
- name: One snapshot cycle with kubesnap.snapshots
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Snapshot the protected volumes that are due and wait until they are ready
      kubesnap.snapshots.k8s_pv_snapshot:
        namespace: "{{ bench_namespace }}"
        lease_namespace: "{{ bench_namespace }}"
        wait_timeout: "{{ wait_timeout }}"
"""

# The job as users write it today with kubernetes.core.
LOOP_PLAYBOOK = """\
- name: Snapshot every annotated PVC with kubernetes.core
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: List the PVCs
      kubernetes.core.k8s_info:
        kind: PersistentVolumeClaim
        namespace: "{{ bench_namespace }}"
      register: pvcs

    - name: Keep the annotated ones
      ansible.builtin.set_fact:
        protected: "{{ pvcs.resources | selectattr('metadata.annotations', 'defined')
                       | selectattr('metadata.annotations', 'contains', 'backup.kubernetes.io/deltas')
                       | map(attribute='metadata.name') | list }}"

    - name: Create a VolumeSnapshot per annotated PVC
      kubernetes.core.k8s:
        state: present
        definition:
          apiVersion: snapshot.storage.k8s.io/v1
          kind: VolumeSnapshot
          metadata:
            name: "{{ item }}-snap"
            namespace: "{{ bench_namespace }}"
          spec:
            volumeSnapshotClassName: "{{ snapshot_class }}"
            source:
              persistentVolumeClaimName: "{{ item }}"
      loop: "{{ protected }}"

    - name: Wait until each snapshot is ready
      kubernetes.core.k8s_info:
        api_version: snapshot.storage.k8s.io/v1
        kind: VolumeSnapshot
        namespace: "{{ bench_namespace }}"
        name: "{{ item }}-snap"
      register: result
      until: result.resources[0].status.readyToUse | default(false)
      retries: "{{ wait_timeout }}"
      delay: 1
      loop: "{{ protected }}"
"""

NOOP_PLAYBOOK = """\
- name: ansible-playbook start-up and one trivial module
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""


def run_playbook(workdir: Path, name: str, text: str, extra_vars: dict, venv: Path, collections_path: str, env: dict, tree: bool = False) -> tuple:
    """Run one playbook; returns (seconds from process start to exit, wall-clock start, last task's result or None).

    With `tree`, the ansible.builtin.tree callback writes the last task's result to a file.
    """
    playbook = workdir / f"{name}.yml"
    playbook.write_text(text, encoding="utf-8")
    tree_dir = workdir / f"{name}-tree"
    run_env = dict(env, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    if tree:
        run_env.update(ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree", ANSIBLE_CALLBACK_TREE_DIR=str(tree_dir))
    argv = [str(venv / "bin" / "ansible-playbook"), "-i", "localhost,", "-e", json.dumps(extra_vars), str(playbook)]
    output = workdir / f"{name}.log"
    with open(output, "wb") as handle:
        wall_start = time.time()
        started = time.monotonic()
        result = subprocess.run(argv, cwd=workdir, env=run_env, stdout=handle, stderr=subprocess.STDOUT, check=False)
        seconds = time.monotonic() - started
    if result.returncode != 0:
        tail = "\n".join(output.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        raise BenchError(f"{name} playbook failed (exit {result.returncode}); last lines of {output}:\n{tail}")
    tree_file = tree_dir / "localhost"
    return seconds, wall_start, json.loads(tree_file.read_text(encoding="utf-8")) if tree_file.exists() else None


class Bench:
    """The stack, the clients and the settings one run shares between the variants."""

    def __init__(self, args, state: dict, workdir: Path):
        self.args = args
        self.state = state
        self.workdir = workdir
        self.kubeconfig = Path(state["kubeconfig"])
        helper = api_client(self.kubeconfig, HELPER_AGENT)
        self.core, self.custom = client.CoreV1Api(helper), client.CustomObjectsApi(helper)
        self.audit = HELPERS.AuditLog(state["audit_log"])
        self.admin = state["admin_user"]
        self.controller_users = list(CLUSTER.component_users())
        self.env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        self.namespaces = []
        self.bench_venv = None

    def namespace(self, variant: str, count: int) -> str:
        """A fresh namespace `bench-<variant>-<random>` with `count` bound, annotated PVCs (not timed)."""
        namespace = f"bench-{variant}-{secrets.token_hex(3)}"
        self.namespaces.append(namespace)  # before creating it, so that a failed setup is cleaned up too
        create_namespace(self.core, namespace, count, self.state["storage_class"])
        return namespace

    def requests(self, since: int, namespace: str, agent: str) -> tuple:
        """(the variant's audit events, how many requests of other admin clients fell in its window)."""
        self.audit.since = since
        events = [event for event in self.audit.events(user=self.admin) if event.get("userAgent") != HELPER_AGENT]
        mine = [event for event in events
                if event.get("userAgent") == agent and (event.get("objectRef") or {}).get("namespace") in (None, namespace)]
        return mine, len(events) - len(mine)

    def window(self) -> tuple:
        """Let the controllers settle, then mark the audit log: (offset, 1-min load average)."""
        settle(self.audit, self.controller_users)
        return self.audit.mark(), os.getloadavg()[0]

    def noop_seconds(self) -> float:
        seconds, _wall, _result = run_playbook(self.workdir, "noop", NOOP_PLAYBOOK, {"ansible_python_interpreter": str(VENV_PYTHON)},
                                               VENV_PYTHON.parents[1], str(COLLECTIONS), self.env)
        return seconds

    def ours(self) -> dict:
        count = self.args.volumes
        namespace = self.namespace("ours", count)
        since, load = self.window()
        observer = Observer(self.custom, namespace, count)
        observer.start()
        extra = {"bench_namespace": namespace, "wait_timeout": WAIT_TIMEOUT, "ansible_python_interpreter": str(VENV_PYTHON)}
        seconds, wall_start, result = run_playbook(self.workdir, "ours", OURS_PLAYBOOK, extra, VENV_PYTHON.parents[1], str(COLLECTIONS), self.env,
                                                   tree=True)
        volumes = (result or {}).get("volumes") or []
        done = [v for v in volumes if v.get("action") == "created" and v.get("state") == "ready"]
        if len(done) != count:
            actions = Counter((v.get("action"), v.get("state")) for v in volumes)
            raise BenchError(f"ours: {len(done)} of {count} snapshots created and ready ({dict(actions)})")
        events, others = self.requests(since, namespace, OURS_AGENT)
        return {"name": "ours: kubesnap.snapshots.k8s_pv_snapshot", "seconds": seconds, "events": events, "others": others, "volumes": count,
                "measured": count, "wall_start": wall_start, "result": result, "ready_at": observer.all_ready_at(wall_start), "load": load}

    def loop(self) -> dict:
        count = min(self.args.sample or self.args.volumes, self.args.volumes)
        self.bench_venv = self.bench_venv or ensure_bench_venv()
        namespace = self.namespace("loop", count)
        since, load = self.window()
        observer = Observer(self.custom, namespace, count)
        observer.start()
        extra = {"bench_namespace": namespace, "snapshot_class": self.state["snapshot_class"], "wait_timeout": WAIT_TIMEOUT,
                 "ansible_python_interpreter": str(self.bench_venv / "bin" / "python")}
        seconds, wall_start, _result = run_playbook(self.workdir, "loop", LOOP_PLAYBOOK, extra, self.bench_venv,
                                                    bench_collections_path(self.bench_venv), self.env)
        ready = count_ready(self.custom, namespace)
        if ready != count:
            raise BenchError(f"loop: {ready} of {count} snapshots ready")
        events, others = self.requests(since, namespace, LOOP_AGENT)
        return {"name": "kubernetes.core loop (k8s_info, k8s, until)", "seconds": seconds, "events": events, "others": others,
                "volumes": self.args.volumes, "measured": count, "ready_at": observer.all_ready_at(wall_start), "load": load}

    def floor(self) -> dict:
        count = self.args.volumes
        namespace = self.namespace("floor", count)
        since, load = self.window()
        seconds, timeline = floor_cycle(self.kubeconfig, namespace, self.state["snapshot_class"], count)
        events, others = self.requests(since, namespace, FLOOR_AGENT)
        return {"name": f"floor: client, 1 list, {WORKERS} threads, 1 watch", "seconds": seconds, "events": events, "others": others,
                "volumes": count, "measured": count, "timeline": timeline, "load": load}


def floor_cycle(kubeconfig: Path, namespace: str, snapshot_class: str, count: int) -> tuple:
    """The least a cycle can do: one list, the creates from a thread pool, one watch until all are ready.

    Returns (seconds, [(phase, seconds since the start)]).
    """
    started = time.monotonic()
    api = api_client(kubeconfig, FLOOR_AGENT)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    pvcs = [pvc.metadata.name for pvc in core.list_namespaced_persistent_volume_claim(namespace).items
            if ANNOTATION in (pvc.metadata.annotations or {})]

    def create(pvc: str) -> None:
        body = {"apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}", "kind": "VolumeSnapshot", "metadata": {"name": f"{pvc}-snap"},
                "spec": {"volumeSnapshotClassName": snapshot_class, "source": {"persistentVolumeClaimName": pvc}}}
        custom.create_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, SNAPSHOTS, body)

    timeline = [("PVCs listed", time.monotonic() - started)]
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(create, pvcs))
    timeline.append(("all VolumeSnapshots created", time.monotonic() - started))
    ready = watch_until_ready(custom, namespace, len(pvcs), WAIT_TIMEOUT)
    seconds = time.monotonic() - started
    timeline.append(("all readyToUse (watch)", seconds))
    if len(pvcs) != count or len(ready) != count:
        raise BenchError(f"floor: {len(ready)} of {count} snapshots ready ({len(pvcs)} annotated PVCs listed)")
    return seconds, timeline


# ---------------------------------------------------------------- report


def scaled(row: dict, value: float) -> float:
    """A value measured on row['measured'] volumes, scaled linearly to row['volumes']."""
    return value * row["volumes"] / row["measured"]


def print_table(rows: dict) -> None:
    ours = rows["ours"]["seconds"]
    print()
    print(f"{'variant':<46} {'seconds':>9} {'requests':>9} {'req/volume':>11} {'vs ours':>8}")
    for row in rows.values():
        extrapolated = row["measured"] != row["volumes"]
        seconds, requests = scaled(row, row["seconds"]), scaled(row, len(row["events"]))
        mark = "*" if extrapolated else " "
        print(f"{row['name']:<46} {seconds:8.1f}{mark} {requests:8.0f}{mark} {requests / row['volumes']:10.2f}{mark} {seconds / ours:7.2f}x")
    for row in rows.values():
        if row["measured"] != row["volumes"]:
            print(f"* extrapolated linearly from {row['measured']} to {row['volumes']} volumes "
                  f"(measured {row['seconds']:.1f} s, {len(row['events'])} requests)")


def print_goals(rows: dict) -> None:
    ours = rows["ours"]["seconds"]
    print()
    if "loop" in rows:
        ratio = scaled(rows["loop"], rows["loop"]["seconds"]) / ours
        verdict = "PASS" if ratio >= GOAL_LOOP_OVER_OURS else "MISS"
        print(f"loop/ours  = {ratio:6.1f}x  (goal >= {GOAL_LOOP_OVER_OURS:.0f}x)   {verdict}")
    if "floor" in rows:
        ratio = ours / rows["floor"]["seconds"]
        verdict = "PASS" if ratio <= GOAL_OURS_OVER_FLOOR else "MISS"
        print(f"ours/floor = {ratio:6.2f}x  (goal <= {GOAL_OURS_OVER_FLOOR}x)  {verdict}")


def event_time(event: dict) -> float:
    return datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()


def print_ours_detail(row: dict, noop: float) -> None:
    """Where the module's time goes: the audit log's timestamps, the observer and the module's own durations."""
    count = row["volumes"]
    verbs = Counter(event["verb"] for event in row["events"])
    own = row["result"].get("api_calls") or {}
    print()
    print("ours, requests per volume by verb: " + ", ".join(f"{verb} {verbs[verb] / count:.2f} ({verbs[verb]})" for verb in sorted(verbs)))
    print(f"ours, the module's own count (api_calls): {sum(own.values())} {own}; audit log: {len(row['events'])} "
          "(cluster-scoped requests of other runs of the module in the same window cannot be told apart)")
    # Timeline from the bench namespace's requests only: those are certainly this run's.
    events = sorted((event for event in row["events"] if (event.get("objectRef") or {}).get("namespace")), key=event_time)
    creates = [event for event in events if event["verb"] == "create" and event["objectRef"].get("resource") == SNAPSHOTS]
    durations = [v["duration"] for v in row["result"]["volumes"] if v.get("duration") is not None]
    timeline = [("ansible-playbook no-op (one ansible.builtin.ping task), separate run", noop)]
    if events:
        timeline.append(("first request in the namespace (PVC list, after the cluster-wide PV list)", event_time(events[0]) - row["wall_start"]))
    if creates:
        timeline.append(("first VolumeSnapshot create", event_time(creates[0]) - row["wall_start"]))
        timeline.append(("last VolumeSnapshot create", event_time(creates[-1]) - row["wall_start"]))
    if row.get("ready_at") is not None:
        timeline.append(("last snapshot readyToUse (observer watch)", row["ready_at"]))
    if events:
        timeline.append(("last request in the namespace (the watch that saw them settle opens)", event_time(events[-1]) - row["wall_start"]))
    timeline.append(("ansible-playbook exit", row["seconds"]))
    print("ours, timeline (seconds from the ansible-playbook process start):")
    for label, value in timeline:
        print(f"  {value:7.2f}  {label}")
    if durations:
        print(f"ours, volumes[].duration (lease + create + wait): min {min(durations):.2f}, median {statistics.median(durations):.2f}, "
              f"max {max(durations):.2f} s")


def print_notes(rows: dict) -> None:
    print()
    if "floor" in rows:
        print("floor, timeline: " + ", ".join(f"{label} {value:.2f} s" for label, value in rows["floor"]["timeline"]))
    if rows.get("loop", {}).get("ready_at") is not None:
        loop = rows["loop"]
        print(f"loop, measured on {loop['measured']} volumes: all snapshots ready {loop['ready_at']:.1f} s after start, "
              f"playbook exited at {loop['seconds']:.1f} s")
    print(f"1-min load average at each variant's start ({os.cpu_count()} CPUs): "
          + ", ".join(f"{name} {row['load']:.1f}" for name, row in rows.items()))
    others = {name: row["others"] for name, row in rows.items() if row["others"]}
    if others:
        print("requests of other clients of the same user in the variants' windows (not counted): "
              + ", ".join(f"{name} {value}" for name, value in others.items()))


# ---------------------------------------------------------------- main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=200, help="annotated PVCs per variant (default 200)")
    parser.add_argument("--controllers", choices=("fast", "default"), default="fast",
                        help="snapshot controllers' client limits; the stack is restarted only if it runs the other setting")
    parser.add_argument("--sample", type=int, help="run the kubernetes.core loop on only N PVCs and extrapolate linearly")
    parser.add_argument("--quick", action="store_true", help="same as --sample 20")
    parser.add_argument("--keep", action="store_true", help="keep the bench namespaces")
    parser.add_argument("--variants", default="floor,ours,loop", help="comma-separated subset and order of floor,ours,loop")
    args = parser.parse_args(argv)
    if args.quick and not args.sample:
        args.sample = 20
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    if "ours" not in args.variants or not set(args.variants) <= {"floor", "ours", "loop"}:
        parser.error("--variants: a subset of floor,ours,loop that includes ours")
    return args


def run(args, bench: Bench) -> dict:
    rows = {}
    for name in args.variants:
        log(f"variant {name} ...")
        rows[name] = getattr(bench, name)()
        log(f"variant {name}: {rows[name]['seconds']:.1f} s on {rows[name]['measured']} volumes")
    noop = bench.noop_seconds()
    print_table(rows)
    print_goals(rows)
    print_ours_detail(rows["ours"], noop)
    print_notes(rows)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        ensure_collection_link()
        if "loop" in args.variants:
            ensure_bench_venv()
        state = ensure_cluster(args.controllers)
    except (BenchError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        return 1
    faults = active_faults(Path(state["csi_faults_file"]))
    if faults:
        log(f"warning: CSI faults are set ({faults}); timings may include them")
    log(f"stack {state['server']}, controllers {state['controllers']}, {args.volumes} volumes per variant"
        + (f", loop on {args.sample} (extrapolated)" if args.sample and args.sample < args.volumes else ""))
    with tempfile.TemporaryDirectory(prefix="kubesnap-bench-") as workdir:
        bench = Bench(args, state, Path(workdir))
        try:
            run(args, bench)
        except (BenchError, TimeoutError, ApiException, subprocess.CalledProcessError) as exc:
            log(f"error: {exc}")
            return 1
        finally:
            cleanup(args, bench)
    return 0


def cleanup(args, bench: Bench) -> None:
    if args.keep:
        log(f"kept namespaces: {' '.join(bench.namespaces)}")
        return
    if bench.namespaces:
        log("deleting the bench snapshots, then the namespaces")
        try:
            delete_namespaces(bench.custom, bench.core, bench.namespaces)
        except (TimeoutError, ApiException) as exc:
            log(f"warning: cleanup incomplete: {exc}")


if __name__ == "__main__":
    sys.exit(main())
