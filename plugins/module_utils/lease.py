# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A coordination.k8s.io Lease that keeps two runs (cron and AWX, say) from writing at once.

Runs take it only when they are about to write, so a run with nothing to do writes nothing.
An expired lease (its holder crashed) is taken over; the apiserver's resourceVersion check makes
the takeover safe when two runs try at the same moment.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import uuid

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path

GROUP_VERSION = 'coordination.k8s.io/v1'


class LeaseHeld(Exception):
    """Another run holds the lease and did not release it in time."""


def _micro_time(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _parse(value):
    return datetime.datetime.fromisoformat(value.replace('Z', '+00:00')) if value else None


class Lease:
    def __init__(self, client, namespace, name, duration, wait=0, clock=time.monotonic, sleep=time.sleep):
        self._client = client
        self._namespace = namespace
        self._name = name
        self._duration = int(duration)
        self._wait = wait
        self._clock = clock
        self._sleep = sleep
        self.holder = '%s-%d-%s' % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
        self._held = None

    def _spec(self, now):
        return {'holderIdentity': self.holder, 'leaseDurationSeconds': self._duration,
                'acquireTime': _micro_time(now), 'renewTime': _micro_time(now)}

    def _try_acquire(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        collection = resource_path(GROUP_VERSION, 'leases', self._namespace)
        for _attempt in range(3):  # the holder may release the lease between our create and our read
            try:
                return self._client.create(collection, {'apiVersion': GROUP_VERSION, 'kind': 'Lease',
                                                        'metadata': {'name': self._name, 'namespace': self._namespace},
                                                        'spec': self._spec(now)})
            except KubeError as exc:
                if exc.status != 409:
                    raise
            try:
                current = self._client.get(resource_path(GROUP_VERSION, 'leases', self._namespace, self._name))
                break
            except KubeError as exc:
                if exc.status != 404:
                    raise
        else:
            return LeaseHeld('lease %s/%s keeps changing hands' % (self._namespace, self._name))
        spec = current.get('spec') or {}
        renewed = _parse(spec.get('renewTime')) or _parse(spec.get('acquireTime'))
        expires = renewed + datetime.timedelta(seconds=spec.get('leaseDurationSeconds') or 0) if renewed else None
        if spec.get('holderIdentity') and expires and expires > now:
            return LeaseHeld('lease %s/%s is held by %s until %s' % (self._namespace, self._name, spec['holderIdentity'],
                                                                     expires.isoformat()))
        current['spec'] = self._spec(now)
        try:
            return self._client.replace(resource_path(GROUP_VERSION, 'leases', self._namespace, self._name), current)
        except KubeError as exc:
            if exc.status == 409:  # another run took it between our read and write
                return LeaseHeld('lease %s/%s was taken by another run' % (self._namespace, self._name))
            raise

    def acquire(self):
        deadline = self._clock() + self._wait
        while True:
            outcome = self._try_acquire()
            if not isinstance(outcome, LeaseHeld):
                self._held = outcome
                return
            if self._clock() >= deadline:
                raise outcome
            self._sleep(min(2.0, max(0.1, deadline - self._clock())))

    def release(self):
        """Give the lease up; deleting only our own version, so a takeover is never undone."""
        if self._held is None:
            return
        meta = self._held['metadata']
        try:
            self._client.delete(resource_path(GROUP_VERSION, 'leases', self._namespace, self._name),
                                preconditions={'uid': meta['uid'], 'resourceVersion': meta['resourceVersion']})
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise
        self._held = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()
