#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot_info
short_description: List the snapshots this collection owns, per volume
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - Lists the snapshots owned by this collection (one paged list per backend) and groups them by volume,
    with state, age and size where the backend knows it.
  - Snapshots of volumes that no longer exist are listed as orphans; those of volumes that exist but are no
    longer protected (their annotation or label was removed) are listed as unprotected.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.discovery
  - kubesnap.snapshots.attributes.info_module
options:
  now:
    description: Instant the ages are computed from (ISO 8601 with offset); the current time by default.
    type: str
'''

EXAMPLES = r'''
- name: List owned snapshots
  kubesnap.snapshots.snapshot_info:
    namespace: db
  register: snaps

- name: Volumes without a ready snapshot
  ansible.builtin.debug:
    msg: "{{ snaps.volumes | rejectattr('ready', 'gt', 0) | map(attribute='volume') }}"
'''

RETURN = r'''
volumes:
  description: Protected volumes with their owned snapshots, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    volume:
      description: C(namespace/pvc), or the PV name; for orphans and unprotected volumes C(namespace/volume key).
      type: str
    key:
      description: Volume key the snapshots are labelled with (the PV's UID).
      type: str
    namespace:
      description: Namespace of the claim, or of the group's snapshots (orphans and unprotected volumes are grouped per namespace).
      type: str
    policy:
      description: Retention policy.
      type: str
    ready:
      description: Number of ready snapshots.
      type: int
    snapshots:
      description:
        - Backups of the volume with C(name), C(namespace), C(state), C(created_at), C(age_seconds), C(size), C(held), C(error),
          C(source) (what it was taken of).
      type: list
      elements: dict
    inconsistent:
      description:
        - Snapshots carrying the volume's ownership labels but taken of another claim or volume, each with a C(reason).
          They are no backup of it and are not counted in RV(volumes[].ready).
      type: list
      elements: dict
orphans:
  description: Owned snapshots whose volume no longer exists, grouped like RV(volumes), per volume key and namespace.
  returned: always
  type: list
  elements: dict
unprotected:
  description: Owned snapshots of existing volumes that no source protects any more, grouped like RV(orphans).
  returned: always
  type: list
  elements: dict
problems:
  description: Objects that asked for protection but cannot get it, as in M(kubesnap.snapshots.k8s_pv_info).
  returned: always
  type: list
  elements: dict
failed_volumes:
  description: What failed, one line per volume (or object) naming it and the error; the task fails listing them in C(msg).
  returned: when the task failed after trying every volume
  type: list
  elements: str
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import READY
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (
    AUTH_SPEC, DISCOVERY_SPEC, KubesnapModule, argument_spec, discovery_constraints,
)


def group(label, key, namespace, policy, snapshots, now, inconsistent=()):
    return {'volume': label, 'key': key, 'namespace': namespace, 'policy': policy, 'ready': sum(1 for s in snapshots if s.state == READY),
            'snapshots': [s.as_dict(now) for s in snapshots],
            'inconsistent': [dict(s.as_dict(now), reason=reason) for s, reason in inconsistent]}


def label(key, namespace):
    return '%s/%s' % (namespace, key) if namespace else key


def main():
    spec = argument_spec(AUTH_SPEC, DISCOVERY_SPEC, now={'type': 'str'})
    module = KubesnapModule(argument_spec=spec, **discovery_constraints(spec))
    now = module.now()
    try:
        inventory, registry, targets, problems = module.targets()
        owned = cycle.list_owned(registry, [backend.name for backend in registry], module.params['namespace'])
    except KubeError as exc:
        module.fail_api(exc)
    targeted = {target.key for target in targets}
    live = inventory.live_volume_keys()
    volumes = [group(t.display, t.key, t.namespace, t.policy.text if t.policy else None, cycle.snapshots_of(t, owned), now,
                     cycle.inconsistent_of(t, owned)) for t in targets]
    orphans = [group(label(key, namespace), key, namespace, getattr(cycle.orphan_policy(snapshots), 'text', None), snapshots, now)
               for key, namespace, snapshots in cycle.per_namespace(owned, set(owned) - live)]
    unprotected = [group(label(key, namespace), key, namespace, None, snapshots, now)
                   for key, namespace, snapshots in cycle.per_namespace(owned, set(owned) & live - targeted)]
    module.exit_or_fail([], '', problems, changed=False, volumes=volumes, orphans=orphans, unprotected=unprotected)


if __name__ == '__main__':
    main()
