# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-side apply of plain manifests: what k8s_apply needs beyond the JSON client, most of it pure."""

from __future__ import annotations

import dataclasses
import json

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s_service
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path

# What the server writes on its own: a change there is no change of ours.
SERVER_METADATA = ('managedFields', 'resourceVersion', 'generation', 'uid', 'creationTimestamp')


class ManifestError(ValueError):
    """A manifest that cannot be applied, named by its position and field."""


def expand(manifests):
    """The objects of `manifests`, a `kind: List` replaced by its items, each checked to name what it is."""
    objects = []
    for index, manifest in enumerate(manifests):
        where = 'manifests[%d]' % index
        if not isinstance(manifest, dict):
            raise ManifestError('%s: must be a mapping, got %s' % (where, type(manifest).__name__))
        if manifest.get('kind') == 'List':
            items = manifest.get('items')
            if not isinstance(items, list):
                raise ManifestError('%s: items: a List must hold a list of objects' % where)
            objects.extend(checked(item, '%s.items[%d]' % (where, number)) for number, item in enumerate(items))
        else:
            objects.append(checked(manifest, where))
    return objects


def checked(manifest, where):
    if not isinstance(manifest, dict):
        raise ManifestError('%s: must be a mapping, got %s' % (where, type(manifest).__name__))
    for field in ('apiVersion', 'kind'):
        if not isinstance(manifest.get(field), str) or not manifest[field]:
            raise ManifestError('%s: %s: required' % (where, field))
    if not isinstance(manifest.get('metadata'), dict) or not manifest['metadata'].get('name'):
        raise ManifestError('%s (%s): metadata.name: required' % (where, manifest['kind']))
    return manifest


def title(manifest):
    """`Kind namespace/name` or `Kind name`."""
    metadata = manifest['metadata']
    return '%s %s%s' % (manifest['kind'], metadata['namespace'] + '/' if metadata.get('namespace') else '', metadata['name'])


def normalized(obj):
    """An object as its owners wrote it: without status and the metadata the server keeps."""
    if obj is None:
        return None
    obj = json.loads(json.dumps(obj))
    obj.pop('status', None)
    for field in SERVER_METADATA:
        obj.get('metadata', {}).pop(field, None)
    return obj


class Resources:
    """A manifest's object path, its kind looked up in the server's discovery documents (once per apiVersion)."""

    def __init__(self, client):
        self._discovery = k8s_service.Discovery(client)

    def path(self, manifest):
        """URL path of the manifest's object; ManifestError (naming the field) when the server does not serve its kind."""
        api_version, kind = manifest['apiVersion'], manifest['kind']
        served = self._discovery.kind(api_version, kind)
        if served is None:
            raise ManifestError('kind: the server does not serve %s in %s' % (kind, api_version))
        plural, namespaced = served
        namespace = manifest['metadata'].get('namespace')
        if namespaced and not namespace:
            raise ManifestError('metadata.namespace: required for the namespaced kind %s' % kind)
        return resource_path(api_version, plural, namespace if namespaced else None, manifest['metadata']['name'])


def apply(client, resources, manifest, dry_run, force):
    """Server-side apply one object: (before, after), both normalized; before is None for a new object."""
    path = resources.path(manifest)
    before = k8s_service.get_or_none(client, path)
    after = k8s_service.apply(client, path, manifest, force=force, dry_run=dry_run)
    return normalized(before), normalized(after)


@dataclasses.dataclass
class Applied:
    """What k8s_apply reports: an entry per object (kind, name, namespace, action), the diffs of what changed (or would), the
    objects that failed (one line each) and the warnings to give."""

    objects: list = dataclasses.field(default_factory=list)
    diffs: list = dataclasses.field(default_factory=list)
    failures: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    def add(self, manifest, action, before=None, after=None, **extra):
        metadata = manifest['metadata']
        self.objects.append(dict({'kind': manifest['kind'], 'name': metadata['name'], 'namespace': metadata.get('namespace'),
                                  'action': action}, **extra))
        if action in ('created', 'updated'):
            self.diffs.append({'before_header': title(manifest), 'after_header': title(manifest), 'before': before or {},
                               'after': manifest if after is None else after})

    def fail(self, manifest, error):
        self.failures.append('%s: %s' % (title(manifest), error))
        self.add(manifest, 'failed', reason=str(error))


def apply_all(client, objects, dry_run, force, namespace_exists):
    """Server-side apply each expanded object in order (`dry_run`: the server's dryRun=All); one failing does not stop the others.

    A dry run cannot check what goes into a namespace it did not create (nor one an earlier task would create): such objects
    are planned as created, with a warning once per missing namespace (`namespace_exists(name)` tells).
    """
    applied = Applied()
    new_namespaces, missing_namespaces = set(), set()
    resources = Resources(client)
    for manifest in objects:
        namespace = manifest['metadata'].get('namespace')
        if dry_run and namespace in new_namespaces:
            applied.add(manifest, 'created')  # the dry run created no namespace: the server cannot dry-run what goes into it
            continue
        try:
            before, after = apply(client, resources, manifest, dry_run, force)
        except KubeError as exc:
            if dry_run and exc.status == 404 and namespace and not namespace_exists(namespace):
                # A fresh install planned in check mode: an earlier task or role (the rbac role before the schedule role)
                # would have made the namespace. The object is planned as created; the server could not check it.
                if namespace not in missing_namespaces:
                    missing_namespaces.add(namespace)
                    applied.warnings.append('namespace %s does not exist: check mode plans its objects as created without the server '
                                            'checking them; a real run fails unless an earlier step creates the namespace' % namespace)
                applied.add(manifest, 'created', namespace_missing=True)
            else:
                applied.fail(manifest, exc)
            continue
        except ManifestError as exc:
            applied.fail(manifest, exc)
            continue
        action = 'created' if before is None else 'unchanged' if before == after else 'updated'
        applied.add(manifest, action, before, after)
        if action == 'created' and manifest['kind'] == 'Namespace' and manifest['apiVersion'] == 'v1':
            new_namespaces.add(manifest['metadata']['name'])
    return applied
