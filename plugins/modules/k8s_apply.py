#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_apply
short_description: Server-side apply a list of Kubernetes manifests
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - Applies each manifest with server-side apply under the field manager C(kubesnap), so the apiserver validates and
    merges it, and fields other managers own are left alone.
  - A small generic module so that the C(rbac) and C(schedule) roles need nothing beyond this collection
    (C(kubernetes.core) is not a dependency).
  - Every object is tried; the task fails at the end naming the objects that could not be applied (the first 20 in the
    message, every one in RV(objects) with V(failed) and its reason).
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
options:
  manifests:
    description:
      - The objects to apply, in order. A C(List) (C(kind=List)) stands for its items.
      - Namespaced objects must name their namespace in C(metadata.namespace).
    type: list
    elements: dict
    required: true
  force_conflicts:
    description: Take over fields another field manager set to a different value, instead of failing on the conflict.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description:
      - Sends every apply with C(dryRun=All) - the apiserver validates and reports the change without storing it.
      - Objects in a namespace the same task would create are reported as V(created) without a request (the dry run created no namespace).
      - Objects in a namespace that does not exist are reported as V(created) with RV(objects[].namespace_missing) and a
        warning, so that check mode of a fresh install (the C(rbac) role, then the C(schedule) role) plans it instead of
        failing; a real run fails on them unless an earlier step creates the namespace.
  diff_mode:
    support: full
    description: Each changed object before and after, without status and the metadata the server keeps.
'''

EXAMPLES = r'''
- name: Install the service account and its rules
  kubesnap.snapshots.k8s_apply:
    manifests: "{{ lookup('ansible.builtin.file', 'rbac.yml') | from_yaml }}"
'''

RETURN = r'''
objects:
  description: One entry per object, in the order applied.
  returned: always
  type: list
  elements: dict
  sample:
    - {kind: ClusterRole, name: kubesnap, namespace: null, action: created}
  contains:
    kind:
      description: Kind of the object.
      type: str
      sample: ClusterRole
    name:
      description: Name of the object.
      type: str
      sample: kubesnap
    namespace:
      description: Namespace of the object; null for cluster-scoped ones.
      type: str
      sample: null
    action:
      description: V(created), V(updated), V(unchanged) or V(failed) (in check mode what would happen).
      type: str
      sample: created
    namespace_missing:
      description: Check mode only - the object's namespace does not exist yet, so the server could not check the object.
      type: bool
      returned: when true
      sample: true
    reason:
      description: Why it failed; only for V(failed).
      type: str
      sample: "PATCH /apis/rbac.authorization.k8s.io/v1/clusterroles/kubesnap: 403 forbidden"
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import apply
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import listed
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, KubesnapModule


def run_module(module):
    """Plan (the manifests checked and expanded) -> act (each object applied, or dry-run in check mode) -> report."""
    try:
        objects = apply.expand(module.params['manifests'])
    except apply.ManifestError as exc:
        module.fail_json(msg=str(exc))
    applied = apply.apply_all(module.client, objects, module.check_mode, module.params['force_conflicts'], module.namespace_exists)
    for warning in applied.warnings:
        module.warn(warning)
    result = {'changed': bool(applied.diffs), 'objects': applied.objects}
    if module._diff:
        result['diff'] = applied.diffs
    if applied.failures:
        module.fail_json(msg=listed('objects could not be applied', applied.failures, see='objects'), **result)
    module.exit_json(**result)


def main():
    spec = dict(AUTH_SPEC, manifests={'type': 'list', 'elements': 'dict', 'required': True},
                force_conflicts={'type': 'bool', 'default': False})
    run_module(KubesnapModule(argument_spec=spec))


if __name__ == '__main__':
    main()
