# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes verbs every module uses, on top of the JSON client in k8s.py.

One place says what a missing object is (None), how a change is sent (merge patch, server-side
apply under one field manager), how a delete is kept from touching anything it did not plan on
(preconditions), and how kinds are found on the server (discovery, once per apiVersion).
Waiting lives beside it, in k8s_wait.py.
"""

from __future__ import annotations

import json
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import call_with_retry, delays

# The field manager of every server-side apply and create of the collection: one owner of the fields it writes.
FIELD_MANAGER = 'kubesnap'
APPLY_CONTENT_TYPE = 'application/apply-patch+yaml'
MERGE_PATCH = 'application/merge-patch+json'


def get_or_none(client, path):
    """The object at `path`, or None when there is none (404); every other error is raised."""
    try:
        return client.get(path)
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def patch(client, path, body, uid=None):
    """A JSON merge patch (RFC 7386): null removes a key; a metadata.resourceVersion in `body` makes it conditional.

    With `uid`, only that object is patched: another one made under the name since is refused by the server (a uid
    cannot change), raised here as a 409 like delete_if_unchanged's; a gone one is a 404.
    """
    if uid:
        body = dict(body, metadata=dict(body.get('metadata') or {}, uid=uid))
    try:
        return client.request('PATCH', path, body=body, content_type=MERGE_PATCH)
    except KubeError as exc:
        # The apiserver's answer to a uid that differs from the object's: 422, "metadata.uid: ... field is immutable".
        if uid and exc.status == 422 and 'metadata.uid' in exc.message:
            raise KubeError('PATCH', path, 409, 'another object holds the name now (not uid %s)' % uid, 'Conflict') from None
        raise


def apply(client, path, manifest, force=False, dry_run=False):
    """Server-side apply of `manifest` at its object `path` under FIELD_MANAGER; the object as the server answers it."""
    query = {'fieldManager': FIELD_MANAGER, 'force': 'true' if force else None, 'dryRun': 'All' if dry_run else None}
    # A JSON string: JSON is YAML, and the REST layer sends a string body as it is.
    return client.request('PATCH', path, query, body=json.dumps(manifest), content_type=APPLY_CONTENT_TYPE)


def create(client, collection, body, dry_run=False):
    """Create `body` in `collection` under FIELD_MANAGER (a 409 when the name is taken is raised)."""
    return client.request('POST', collection, {'fieldManager': FIELD_MANAGER, 'dryRun': 'All' if dry_run else None}, body)


def delete_if_unchanged(client, path, uid, resource_version=None, propagation=None):
    """Delete the object at `path` only if it still is the one planned on (its uid, and its resourceVersion when given).

    True when deleted, False when it was already gone (404). A 409 (replaced or changed since) is raised:
    the caller decides whether to read it again. Without a uid there is nothing to hold the server to: refused.
    """
    if not uid:
        raise ValueError('delete_if_unchanged(%s): no uid to make the delete conditional on' % path)
    body = {'kind': 'DeleteOptions', 'apiVersion': 'v1', 'preconditions': {'uid': uid}}
    if resource_version:
        body['preconditions']['resourceVersion'] = resource_version
    if propagation:
        body['propagationPolicy'] = propagation
    try:
        client.request('DELETE', path, body=body)
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def is_conflict(exc):
    """A conditional write refused because the object changed (or was replaced) since it was read: 409."""
    return isinstance(exc, KubeError) and exc.status == 409


def retry_on_conflict(call, attempts, sleep=time.sleep):
    """`call()` again while it fails with a conflict, `attempts` calls at most, after short jittered pauses (retry.py);
    `call` reads the object anew and decides again each time (client-go's RetryOnConflict). The last conflict is raised."""
    return call_with_retry(call, is_conflict, pauses=delays(attempts - 1, base=0.05, cap=0.5), sleep=sleep)


class Discovery:
    """What the server serves, read from its discovery documents once per apiVersion for the whole run."""

    def __init__(self, client):
        self._client = client
        self._lists = {}

    def resources(self, group_version):
        """The APIResourceList entries of `group_version` (subresources left out); [] when the server does not serve it (404)."""
        if group_version not in self._lists:
            prefix = '/api/' if '/' not in group_version else '/apis/'
            document = get_or_none(self._client, prefix + group_version) or {}
            self._lists[group_version] = [item for item in document.get('resources') or [] if '/' not in item.get('name', '/')]
        return self._lists[group_version]

    def kind(self, group_version, kind):
        """(plural, namespaced) of `kind` in `group_version`, or None when the server does not serve it."""
        for item in self.resources(group_version):
            if item.get('kind') == kind:
                return item['name'], bool(item.get('namespaced', False))
        return None

    def preferred_versions(self):
        """The groupVersion the server prefers for each API group, in the server's priority order (core `v1` not included)."""
        groups = self._client.get('/apis').get('groups') or []
        return [version for version in ((group.get('preferredVersion') or {}).get('groupVersion') for group in groups) if version]
