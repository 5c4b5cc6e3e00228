#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_pv_thaw
short_description: Resume the applications a killed snapshot run left quiesced
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - M(kubesnap.snapshots.k8s_pv_snapshot) marks a pod (annotation C(kubesnap.io/hook-mark)) before its pre hook and removes
    the mark after its post hook. A run killed in between (SIGKILL, a lost node) leaves the mark. This module finds every
    marked pod, runs the post hook the mark records (no configuration needed) and removes the mark.
  - A mark whose run still holds the Lease it was taken under is a window open now, and is left alone (V(in_window)) unless
    O(force).
  - A post hook that fails keeps the mark and fails the task. A mark that is not one this collection writes is reported and
    fails the task; it is never guessed at.
  - Every k8s_pv_snapshot run with hooks does the same first, under its Lease; this module is for an operator, or a
    schedule that must not wait for the next snapshot run.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
attributes:
  check_mode:
    support: full
    description: Reports the marked pods it would thaw; runs and writes nothing.
  diff_mode:
    support: none
    description: Nothing to compare.
options:
  namespace:
    description: Only pods of this namespace; all namespaces when absent.
    type: str
  force:
    description: Thaw marks whose run still holds its Lease too.
    type: bool
    default: false
  concurrency:
    description: Post hooks run at once, from 1 to 1000.
    type: int
    default: 20
'''

EXAMPLES = r'''
- name: Resume every application a killed snapshot run left quiesced
  kubesnap.snapshots.k8s_pv_thaw:

- name: Resume the pods of one namespace, even under a run that still holds its Lease
  kubesnap.snapshots.k8s_pv_thaw:
    namespace: db
    force: true
'''

RETURN = r'''
thawed:
  description: One entry per marked pod found.
  returned: always
  type: list
  elements: dict
  sample:
    - {pod: db/pg-0, uid: 0f6c7d2e-1a2b-4c3d-9e8f-001122334455, run: cron-7f9c-1234-ab12cd34, since: '2026-12-06T09:00:00+00:00',
       action: thawed, post: {rc: 0, timed_out: false, error: null, started: 1796551200.1, ended: 1796551200.3, stdout: '',
       stderr: '', truncated: false}, error: null}
  contains:
    pod:
      description: C(namespace/name).
      type: str
      sample: db/pg-0
    uid:
      description: The pod's uid.
      type: str
      sample: 0f6c7d2e-1a2b-4c3d-9e8f-001122334455
    run:
      description: The run that left the mark (its Lease holder identity).
      type: str
      sample: cron-7f9c-1234-ab12cd34
    since:
      description: When that run marked the pod, just before its pre hook.
      type: str
      sample: '2026-12-06T09:00:00+00:00'
    action:
      description: V(thawed), V(would_thaw) (check mode), V(in_window) or V(failed).
      type: str
      sample: thawed
    post:
      description: How the recorded post hook ran (as RV(kubesnap.snapshots.k8s_pv_snapshot#module:hooks[].post)); null when none ran.
      type: dict
      sample: {rc: 0, timed_out: false, error: null, started: 1796551200.1, ended: 1796551200.3, stdout: '', stderr: '', truncated: false}
    error:
      description: Why the pod was not thawed; null otherwise.
      type: str
      sample: null
failed_volumes:
  description: One line per pod that could not be thawed; the task fails listing them.
  returned: when a pod could not be thawed
  type: list
  elements: str
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
  sample:
    GET: 2
    PATCH: 1
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import hook_run
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, KubesnapModule


def main():
    # The connection only: a thaw reads pods and Leases and execs; no backend is set up.
    spec = dict({name: dict(option) for name, option in AUTH_SPEC.items()}, namespace={'type': 'str'},
                force={'type': 'bool', 'default': False}, concurrency={'type': 'int', 'default': 20})
    module = KubesnapModule(argument_spec=spec)
    hook_run.thaw_run(module)


if __name__ == '__main__':
    main()
