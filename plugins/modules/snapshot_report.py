#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot_report
short_description: Report a snapshot cycle over one or more clusters, write it as JSON, HTML and metrics, ping a monitor
version_added: 0.2.0
author: kubesnap contributors (@kubesnap)
description:
  - Builds one report from the outcomes the C(kubesnap.snapshots.snapshot_cycle) role records per cluster
    (the results of M(kubesnap.snapshots.k8s_pv_snapshot), M(kubesnap.snapshots.snapshot_expire) and
    M(kubesnap.snapshots.snapshot_info)), per cluster and volume what was created, kept, expired, deferred
    and failed, the newest ready snapshot and its age, and when the next snapshot is due.
  - When the cycle takes recovery points (M(kubesnap.snapshots.k8s_recovery_point)), one line per namespace - its newest
    point, its age and the bytes it stores - marked loudly (C(!! FAILED), C(!! NO POINT), C(!! STALE)) when the namespace
    got no point this run, has none, or its newest is older than the cluster's C(recovery_point_stale_after).
  - Writes it, each only when its path is given, as JSON (on one line), as a self-contained HTML page and as
    Prometheus text-file metrics for node_exporter's textfile collector. Every file is written to a temporary file
    in the same directory and renamed over the old one, so a reader never sees half a file.
  - The HTML page fetches nothing (inline CSS, SVG and one small inline script). It opens on the summaries, each
    cluster's totals and errors, the volumes that need attention (failed, deferred, without a ready snapshot, or
    stale - a snapshot was due and none was made) with their timelines, and the totals per namespace, backend and
    tier. Every volume's line is on demand, in a closed section per namespace whose timelines are drawn when it is
    opened, so that a page of ten thousand volumes opens in a second or two; without scripts the lines say the
    same in words.
  - The result echoes each cluster's outcome by its name only (in C(invocation)); the outcomes are the playbook's
    own variables.
  - Then sends one GET to O(ping_url) when no cluster failed, or to O(ping_url_fail) when one did.
    A ping that fails is a warning, never a failure of the task (the backups stand).
  - Runs on the controller; it makes no Kubernetes request. It reports C(changed=false), as the files are
    reports of the run, not state it manages, so a run that snapshots nothing stays unchanged.
requirements:
  - isodate (Python library; reads the retention policies to say when the next snapshot is due)
options:
  clusters:
    description:
      - One outcome per cluster, as the role records it in C(snapshot_cycle_outcome); a cluster named twice fails the task.
      - Keys C(cluster) (name), C(started) and C(finished) (ISO 8601 with offset), C(errors) (what fails
        the cluster; empty when it succeeded), C(discovery) (M(kubesnap.snapshots.k8s_pv_info)'s result),
        C(snapshot), C(expire), C(info), C(recovery_point), C(archive), C(resource_backup) (the registered results of the
        steps; missing or skipped when a step did not run), and C(recovery_point_stale_after) (an ISO 8601 duration -
        a namespace whose newest recovery point is older is marked stale; none when empty).
    type: list
    elements: dict
    required: true
  report_path:
    description: Path of the JSON report; not written when empty.
    type: path
  html_path:
    description: Path of the HTML report; not written when empty.
    type: path
  metrics_path:
    description:
      - Path of the Prometheus metrics (name it C(*.prom) in node_exporter's textfile directory); not written when empty.
      - A failed cluster keeps the C(kubesnap_last_success_timestamp_seconds) the previous file had, so an alert
        on its age fires however many runs fail; so does a namespace whose recovery point was not written this run keep
        C(kubesnap_recovery_point_last_timestamp_seconds) (and C(kubesnap_recovery_point_bytes) of that point).
    type: path
  ping_url:
    description: URL sent one GET when no cluster failed (a dead man's switch such as healthchecks.io); none when empty.
    type: str
  ping_url_fail:
    description: URL sent one GET when a cluster failed; none when empty.
    type: str
  ping_timeout:
    description: Seconds a ping may take, at most 300.
    type: int
    default: 10
  now:
    description: Instant ages and due times are computed from (ISO 8601 with offset); the current time by default.
    type: str
  return_volumes:
    description:
      - Whether RV(report) in the result lists every volume (C(clusters[].volumes)).
      - The role sets V(false), as at ten thousand volumes the lines are megabytes that Ansible copies, encodes and keeps
        in a variable, and the files (and RV(table)) have them all the same.
    type: bool
    default: true
attributes:
  action:
    support: full
    description: An action plugin of the same name cuts each outcome to what the report reads, on the controller, before
      the module runs; C(async) is supported.
  check_mode:
    support: full
    description: Builds the report and returns it; writes no file and sends no ping.
  diff_mode:
    support: none
    description: Nothing to compare.
notes:
  - The ping URLs are not logged, as monitors put their secret in them; a failed ping names only the host.
'''

EXAMPLES = r'''
- name: Report the cycle of this cluster
  kubesnap.snapshots.snapshot_report:
    clusters: ["{{ snapshot_cycle_outcome }}"]
    report_path: /var/lib/kubesnap/report.json
    html_path: /var/www/kubesnap/index.html
    metrics_path: /var/lib/node_exporter/textfile/kubesnap.prom
    ping_url: "{{ lookup('ansible.builtin.env', 'PING_URL') }}"
  register: report

- name: Print the table
  ansible.builtin.debug:
    msg: "{{ report.table }}"
'''

RETURN = r'''
table:
  description: The report as aligned text lines, one per cluster and volume, a totals line, then each cluster's errors.
  returned: always
  type: list
  elements: str
  sample:
    - "cluster  volume      created  kept  expired  deferred  failed  newest ready              age  next due"
    - "prod     db/data-0   1        3     1        0         0       data-0-20261130040000     2m   in 59m"
    - "OK: 1 created, 3 kept, 1 expired, 0 deferred, 0 failed"
    - "cluster  namespace  recovery point       state    age  size     claims"
    - "prod     db         rp_20261130T040000Z  written  2m   5.0 KiB  1"
report:
  description: The whole report, as written to O(report_path).
  returned: always
  type: dict
  contains:
    generated_at:
      description: When the report was built.
      type: str
      sample: "2026-11-30T04:02:00Z"
    status:
      description: V(ok), or V(failed) when a cluster failed.
      type: str
      sample: ok
    duration_seconds:
      description: From the first cluster's start to the last cluster's end.
      type: float
      sample: 12.5
    totals:
      description: Sums over every cluster of C(created), C(kept), C(expired), C(deferred), C(failed).
      type: dict
      sample: {created: 1, kept: 3, expired: 1, deferred: 0, failed: 0}
    clusters:
      description: One report per cluster.
      type: list
      elements: dict
      sample:
        - {cluster: prod, status: ok, started: "2026-11-30T04:00:00Z", finished: "2026-11-30T04:00:12Z", duration_seconds: 12.0,
           errors: [], problems: [], steps: {snapshot: ok, expire: ok, info: ok, recovery_point: skipped, archive: skipped,
                                             resource_backup: skipped},
           totals: {created: 1, kept: 3, expired: 1, deferred: 0, failed: 0}, volumes: [], recovery_points: [],
           recovery_point_totals: {written: 0, not_due: 0, failed: 0, expired: 0, damaged: 0, marked: 0},
           recovery_point_stale_after: null}
      contains:
        cluster:
          description: Name of the cluster (the inventory host).
          type: str
          sample: prod
        status:
          description: V(ok) or V(failed).
          type: str
          sample: ok
        started:
          description: Start of the cluster's cycle.
          type: str
          sample: "2026-11-30T04:00:00Z"
        finished:
          description: End of the cluster's cycle.
          type: str
          sample: "2026-11-30T04:00:12Z"
        duration_seconds:
          description: Duration of the cluster's cycle.
          type: float
          sample: 12.0
        errors:
          description: What failed the cluster.
          type: list
          elements: str
          sample: ["not snapshotted: db/data-0: snapshot data-0-20261130040000 failed: quota exceeded"]
        problems:
          description: Objects that asked for protection but cannot get it, as M(kubesnap.snapshots.k8s_pv_info) returns them.
          type: list
          elements: dict
          sample: [{object: pvc/db/data-1, field: spec.volumeName, reason: claim is not bound to a volume (phase Pending)}]
          contains:
            object:
              description: The object, such as C(pvc/db/data-0).
              type: str
              sample: pvc/db/data-1
            field:
              description: The field at fault.
              type: str
              sample: spec.volumeName
            reason:
              description: What is wrong.
              type: str
              sample: claim is not bound to a volume (phase Pending)
        steps:
          description:
            - Per step (C(snapshot), C(expire), C(info), C(recovery_point), C(archive), C(resource_backup)) V(ok), V(failed)
              or V(skipped).
          type: dict
          sample: {snapshot: ok, expire: ok, info: ok, recovery_point: ok, archive: skipped, resource_backup: skipped}
        totals:
          description: Sums over the cluster's volumes.
          type: dict
          sample: {created: 1, kept: 3, expired: 1, deferred: 0, failed: 0}
        recovery_points:
          description: One entry per namespace of the recovery point step (none when the cluster takes no points).
          type: list
          elements: dict
          sample:
            - {namespace: db, state: written, point: rp_20261130T040000Z, manifest: points/prod/db/rp_20261130T040000Z.json,
               url: s3://backups/points/prod/db/rp_20261130T040000Z.json, created: "2026-11-30T04:00:00Z", age_seconds: 120,
               bytes: 5120, claims: 1, marker: null, reason: null, errors: []}
          contains:
            namespace:
              description: The namespace.
              type: str
              sample: db
            state:
              description: What the step did (M(kubesnap.snapshots.k8s_recovery_point)'s V(written), V(not_due), V(failed), V(planned)).
              type: str
              sample: written
            point:
              description: The newest point this run knows of (written now, or the one that made a new one not due); null when none.
              type: str
              sample: rp_20261130T040000Z
            manifest:
              description: Its manifest's key; null when none.
              type: str
              sample: points/prod/db/rp_20261130T040000Z.json
            url:
              description: Its manifest as an V(s3://) URL; null when none.
              type: str
              sample: s3://backups/points/prod/db/rp_20261130T040000Z.json
            created:
              description: When the point was taken (the time in its name).
              type: str
              sample: "2026-11-30T04:00:00Z"
            age_seconds:
              description: Its age when the report was built.
              type: int
              sample: 120
            bytes:
              description: Bytes the point stores - its resource backup and its archives; null for a point not written this run.
              type: int
              sample: 5120
            claims:
              description: Claims the point names; null for a point not written this run.
              type: int
              sample: 1
            marker:
              description: V(failed) (no point written this run), V(no point), V(stale) (older than C(recovery_point_stale_after)), or null.
              type: str
              sample: null
            reason:
              description: Why no point was due (the module's O(kubesnap.snapshots.k8s_recovery_point#module:interval)), or null.
              type: str
              sample: null
            errors:
              description: What kept the namespace from a point, naming the claim.
              type: list
              elements: str
              sample: []
        recovery_point_totals:
          description:
            - Namespaces whose point was V(written), V(not_due) or V(failed); points V(expired) and kept points found V(damaged);
              namespaces V(marked) (failed, no point, stale).
          type: dict
          sample: {written: 1, not_due: 0, failed: 0, expired: 0, damaged: 0, marked: 0}
        recovery_point_stale_after:
          description: The age past which a newest point is marked stale; null when the cluster takes no points.
          type: str
          sample: P1DT12H
        volumes:
          description: One entry per volume; not in the result with O(return_volumes=false) (the JSON file has it).
          type: list
          elements: dict
          sample:
            - {volume: db/data-0, backend: csi, policy: PT1H P1D, orphan: false, action: created, snapshot: data-0-20261130040000, created: 1, kept: 3,
               expired: 1, deferred: 0, failed: 0, failures: [], newest_ready: data-0-20261130040000,
               newest_ready_at: "2026-11-30T04:00:02+00:00", newest_ready_age_seconds: 118, next_due: "2026-11-30T05:00:02Z",
               snapshots: [], expired_snapshots: []}
          contains:
            volume:
              description: C(namespace/pvc), or the PV name; for orphans C(namespace/volume key).
              type: str
              sample: db/data-0
            backend:
              description: The backend that snapshots the volume (V(csi), V(ebs), V(gce)); null when no step said.
              type: str
              sample: csi
            policy:
              description: Retention policy.
              type: str
              sample: PT1H P1D
            orphan:
              description: Whether these are snapshots of a deleted volume.
              type: bool
              sample: false
            action:
              description: What M(kubesnap.snapshots.k8s_pv_snapshot) did (V(created), V(skipped), V(failed), V(deferred)); null when it did not run.
              type: str
              sample: created
            snapshot:
              description: Name of the snapshot created this run; null when none.
              type: str
              sample: data-0-20261130040000
            created:
              description: Snapshots created this run (0 or 1).
              type: int
              sample: 1
            kept:
              description: Snapshots the volume has after the run.
              type: int
              sample: 3
            expired:
              description: Snapshots deleted this run.
              type: int
              sample: 1
            deferred:
              description: 1 when the snapshot was deferred (the cloud kept answering rate or quota errors).
              type: int
              sample: 0
            failed:
              description: Snapshots not created or not deleted this run.
              type: int
              sample: 0
            failures:
              description: What failed, one line each.
              type: list
              elements: str
              sample: []
            newest_ready:
              description: Name of the newest ready snapshot; null when none.
              type: str
              sample: data-0-20261130040000
            newest_ready_at:
              description: When the newest ready snapshot was cut.
              type: str
              sample: "2026-11-30T04:00:02+00:00"
            newest_ready_age_seconds:
              description: Its age at the end of the run.
              type: int
              sample: 118
            next_due:
              description: When the next snapshot is due by the policy; null for orphans and volumes without a policy.
              type: str
              sample: "2026-11-30T05:00:02Z"
            snapshots:
              description: The snapshots the volume has after the run, each with C(name), C(created_at), C(state), C(held) and C(tier).
              type: list
              elements: dict
              sample: [{name: data-0-20261130040000, created_at: "2026-11-30T04:00:02+00:00", state: ready, held: false, tier: newest}]
              contains:
                name:
                  description: Snapshot name.
                  type: str
                  sample: data-0-20261130040000
                created_at:
                  description: When it was cut.
                  type: str
                  sample: "2026-11-30T04:00:02+00:00"
                state:
                  description: V(ready), V(pending) or V(failed).
                  type: str
                  sample: ready
                held:
                  description: Whether it is held.
                  type: bool
                  sample: false
                tier:
                  description: Why the policy keeps it, short (V(newest), a generation such as V(P1D), V(held), V(pending), V(failed), V(in use),
                    V(point) - named by a kept recovery point).
                  type: str
                  sample: newest
            expired_snapshots:
              description: The snapshots deleted this run, each with C(name) and C(created_at).
              type: list
              elements: dict
              sample: [{name: data-0-20261129040000, created_at: "2026-11-29T04:00:02+00:00"}]
              contains:
                name:
                  description: Snapshot name.
                  type: str
                  sample: data-0-20261129040000
                created_at:
                  description: When it was cut.
                  type: str
                  sample: "2026-11-29T04:00:02+00:00"
failed_clusters:
  description: Names of the clusters whose cycle failed.
  returned: always
  type: list
  elements: str
  sample: []
written:
  description: Paths of the files written.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/kubesnap/report.json]
pinged:
  description: Whether a ping was sent and answered with a 2xx status; null when no URL applied (or in check mode).
  returned: always
  type: bool
  sample: true
'''

import datetime

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubesnap.snapshots.plugins.module_utils import report, retention
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_timestamp


class ReportModule(AnsibleModule):
    """AnsibleModule whose result echoes each cluster's outcome by its name only: the outcomes are the earlier steps'
    results, which the playbook has already, and echoing them doubled what Ansible copies, encodes and stores (tens of
    megabytes at ten thousand volumes)."""

    def _invocation(self):
        clusters = self.params.get('clusters')
        if isinstance(clusters, list):
            clusters = [{'cluster': c.get('cluster')} if isinstance(c, dict) else c for c in clusters]
        return {'module_args': dict(self.params, clusters=clusters)}

    def exit_json(self, **kwargs):
        kwargs.setdefault('invocation', self._invocation())
        super().exit_json(**kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs.setdefault('invocation', self._invocation())
        super().fail_json(msg=msg, **kwargs)


def run_module(module):
    """Plan (the report built from the clusters' outcomes) -> act (its files written, the monitor pinged) -> report."""
    p = module.params
    if not 0 < p['ping_timeout'] <= 300:
        module.fail_json(msg='ping_timeout: %s is not between 1 and 300 seconds' % p['ping_timeout'])
    try:
        now = parse_timestamp(p['now']) if p['now'] else datetime.datetime.now(datetime.timezone.utc)
        built = report.build(p['clusters'], now)
    except (ValueError, TypeError, KeyError) as exc:
        module.fail_json(msg='clusters: cannot build the report: %s: %s' % (type(exc).__name__, exc))
    returned = built if p['return_volumes'] else dict(built, clusters=[{k: v for k, v in c.items() if k != 'volumes'} for c in built['clusters']])
    result = {'changed': False, 'report': returned, 'table': report.table(built),
              'failed_clusters': [c['cluster'] for c in built['clusters'] if c['status'] == 'failed'], 'written': [], 'pinged': None}
    if module.check_mode:
        module.exit_json(**result)
    try:
        result['written'] = report.write_files(built, p['report_path'], p['html_path'], p['metrics_path'])
    except report.WriteError as exc:
        module.fail_json(msg=str(exc), **dict(result, written=exc.written))
    url = p['ping_url'] if built['status'] == 'ok' else p['ping_url_fail']
    if url:
        warning = report.ping(url, p['ping_timeout'])
        if warning:
            module.warn(warning)
        result['pinged'] = warning is None
    module.exit_json(**result)


def main():
    module = ReportModule(argument_spec={
        'clusters': {'type': 'list', 'elements': 'dict', 'required': True},
        'report_path': {'type': 'path'}, 'html_path': {'type': 'path'}, 'metrics_path': {'type': 'path'},
        'ping_url': {'type': 'str', 'no_log': True}, 'ping_url_fail': {'type': 'str', 'no_log': True},
        'ping_timeout': {'type': 'int', 'default': 10}, 'now': {'type': 'str'}, 'return_volumes': {'type': 'bool', 'default': True},
    }, supports_check_mode=True)
    if not retention.HAS_ISODATE:
        module.fail_json(msg=missing_required_lib('isodate'), exception=str(retention.ISODATE_IMPORT_ERROR))
    run_module(module)


if __name__ == '__main__':
    main()
