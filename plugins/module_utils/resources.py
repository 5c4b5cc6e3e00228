# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup and restore of namespaced objects: kinds from API discovery, stripping, the archive, apply order.

Everything here but `discover` and `list_kind` is pure, so the rules are unit-tested without a cluster.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s, k8s_service

try:
    import yaml
    _DUMPER = getattr(yaml, 'CSafeDumper', yaml.SafeDumper)
except ImportError:  # reported through k8s.KUBERNETES_IMPORT_ERROR (the kubernetes package needs PyYAML)
    yaml = None

# kube-backup's eight kinds.
DEFAULT_KINDS = ('services', 'ingresses', 'replicasets', 'secrets', 'configmaps', 'deployments', 'daemonsets', 'statefulsets')
DEFAULT_EXCLUDED_NAMESPACES = ('kube-system',)
# The cluster's own namespaces: a restore never writes into them unless asked to (exclude_namespaces).
RESTORE_EXCLUDED_NAMESPACES = ('kube-system', 'kube-public', 'kube-node-lease')
FLAG_NAMESPACE = 'backuprestore-donotuse'
# Where a namespace itself is archived: <namespace>/namespaces/<namespace>.yaml.
NAMESPACES_KEY = 'namespaces'

# kube-backup's name, UTC; the suffix says what the object holds.
NAME_TIME = '%Y%m%dT%H%M%SZ'
ARCHIVE_SUFFIX = '.tar.gz'
ENCRYPTED_SUFFIX = '.tar.gz.enc'
# kube-backup's own backups are backup_<time>.tgz: restored too.
KUBE_BACKUP_SUFFIX = '.tgz'
BACKUP_NAME = re.compile(r'^backup_(?P<time>\d{8}T\d{6}Z)(?:\.tar\.gz(?:\.enc)?|\.tgz)?$')
# The index is YAML, named so that `kubectl apply -R -f` of an extracted backup passes it by (kubectl reads only
# .json, .yaml and .yml files of a directory). Format 1 named it index.yaml, which made that apply fail.
INDEX_NAME = 'kubesnap-index.txt'
FORMAT_1_INDEX_NAME = 'index.yaml'
# A namespace's own object, in its folder ahead of every kind's folder: `kubectl apply -R -f <namespace>/` walks names
# in order and creates the namespace before what goes in it. Format 1 filed it under namespaces/, after configmaps/.
NAMESPACE_FILE = '00-namespace.yaml'
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
# The index read_archive gives a backup made by kube-backup's script.
KUBE_BACKUP_FORMAT = 'kube-backup'
# A backup dated later than now by more than this (clock skew between hosts) is not trusted as the newest one: a key
# planted far in the future would otherwise be kept forever, expire every real backup and stop new ones.
FUTURE_MARGIN = datetime.timedelta(minutes=5)
# Archives up to this size stay in memory while they are read or written; larger ones spill to a temporary file.
SPOOL_BYTES = 64 * 1024 * 1024
# Limits on what an archive may unpack to: a file larger than any object the apiserver stores (1.5 MiB in etcd, as JSON
# with indentation a few times that), and a whole archive; a gzip bomb is refused instead of filling the disk.
MAX_MEMBER_BYTES = 16 * 1024 * 1024
MAX_ARCHIVE_BYTES = 8 * 1024 * 1024 * 1024
# kube-backup keeps a whole cluster's objects in one file (01-dump.json): a stream of objects, bounded as one; a cluster
# of a few thousand objects passes MAX_MEMBER_BYTES.
MAX_STREAM_BYTES = 1024 * 1024 * 1024
# Nesting an object may have: far beyond any real manifest, far below Python's recursion limit, which the parsers, the
# copies and the JSON encoder of the apply reach on a crafted one (a RecursionError, not an error naming the file).
MAX_DEPTH = 100

LAST_APPLIED = k8s.LAST_APPLIED
# Bookkeeping of this cluster's apiserver and controllers: meaningless, or harmful, on another cluster.
STRIPPED_METADATA = ('uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink',
                     'deletionTimestamp', 'deletionGracePeriodSeconds', 'ownerReferences')
STRIPPED_ANNOTATIONS = (LAST_APPLIED, 'deployment.kubernetes.io/revision', 'deployment.kubernetes.io/revision-history',
                        'deployment.kubernetes.io/desired-replicas', 'deployment.kubernetes.io/max-replicas',
                        'deprecated.daemonset.template.generation')
# Service fields the apiserver fills in when nobody asked for them: kept only when a manager set them.
ALLOCATED_SERVICE_FIELDS = ('clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy', 'healthCheckNodePort')

SERVICE_ACCOUNT_TOKEN = 'kubernetes.io/service-account-token'
# What binds a claim to one volume of this cluster: restored as they are, the claim points at a volume that is gone
# (or another claim's) and the PV controller marks it Lost. Without them its class provisions it anew.
CLAIM_BIND_ANNOTATIONS = ('pv.kubernetes.io/bind-completed', 'pv.kubernetes.io/bound-by-controller',
                          'volume.beta.kubernetes.io/storage-provisioner', 'volume.kubernetes.io/storage-provisioner',
                          'volume.kubernetes.io/selected-node')
CLAIMS_KEY = 'persistentvolumeclaims'
# Published into every namespace by the cluster's root CA publisher: this cluster's CA.
CLUSTER_PUBLISHED_CONFIGMAP = 'kube-root-ca.crt'

# Groups served by the apiserver itself; any other group is a custom resource and is restored last.
BUILT_IN_GROUPS = frozenset((
    '', 'apps', 'batch', 'autoscaling', 'policy', 'networking.k8s.io', 'rbac.authorization.k8s.io', 'storage.k8s.io',
    'discovery.k8s.io', 'coordination.k8s.io', 'scheduling.k8s.io', 'node.k8s.io', 'events.k8s.io', 'certificates.k8s.io',
    'admissionregistration.k8s.io', 'apiextensions.k8s.io', 'flowcontrol.apiserver.k8s.io', 'resource.k8s.io',
    'storagemigration.k8s.io', 'apiregistration.k8s.io', 'authentication.k8s.io', 'authorization.k8s.io',
))
# Restore order: what others refer to first, what creates pods after the objects they mount.
RANKS = {
    ('', 'namespaces'): 0,
    ('', 'serviceaccounts'): 1, ('', 'secrets'): 1, ('', 'configmaps'): 1, ('', 'limitranges'): 1, ('', 'resourcequotas'): 1,
    ('', 'persistentvolumeclaims'): 1, ('rbac.authorization.k8s.io', 'roles'): 1, ('rbac.authorization.k8s.io', 'rolebindings'): 1,
    ('', 'services'): 2, ('networking.k8s.io', 'ingresses'): 2, ('networking.k8s.io', 'networkpolicies'): 2,
}
WORKLOAD_RANK, CUSTOM_RANK = 3, 4


class ArchiveError(ValueError):
    """A backup object that cannot be read: not an archive of ours, corrupt, or encrypted with another key."""


@dataclass(frozen=True)
class Resource:
    """One served resource at its group's preferred version."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple = ()
    singular: str = ''
    short_names: tuple = ()

    @property
    def api_version(self):
        return '%s/%s' % (self.group, self.version) if self.group else self.version

    @property
    def key(self):
        """`deployments.apps`, or `services` for the core group: the directory name in an archive."""
        return '%s.%s' % (self.plural, self.group) if self.group else self.plural

    @property
    def rank(self):
        if (self.group, self.plural) in RANKS:
            return RANKS[self.group, self.plural]
        return WORKLOAD_RANK if self.group in BUILT_IN_GROUPS else CUSTOM_RANK

    def path(self, namespace=None, name=None):
        return k8s.resource_path(self.api_version, self.plural, namespace, name)

    def names(self):
        return {self.plural, self.singular, self.kind.lower()} | {name.lower() for name in self.short_names} - {''}


# Where namespaces are listed and created.
NAMESPACE_RESOURCE = Resource('', 'v1', 'namespaces', 'Namespace', False)


# ------------------------------------------------------------------------------------ discovery

def discover(client, concurrency=8):
    """Every served resource, core first, then the groups in the server's priority order (one request per group)."""
    from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import run_parallel  # pylint: disable=import-outside-toplevel

    discovery = k8s_service.Discovery(client)
    documents = [('v1', {'resources': discovery.resources('v1')})]
    for version, served, error in run_parallel(discovery.resources, discovery.preferred_versions(), concurrency):
        if error is not None:
            # An aggregated API that is down (503) must not hide every other kind: its kinds are reported as not served.
            # (One the server stopped serving since /apis was read is a 404: Discovery's empty list.)
            if isinstance(error, k8s.KubeError) and error.status == 503:
                continue
            raise error
        documents.append((version, {'resources': served}))
    return resources_from(documents)


def resources_from(documents):
    """[Resource] from (groupVersion, APIResourceList) pairs; subresources left out."""
    found = []
    for group_version, document in documents:
        group, _slash, version = group_version.rpartition('/')
        for item in document.get('resources') or []:
            if '/' in item.get('name', '/'):
                continue
            found.append(Resource(group, version, item['name'], item.get('kind', ''), bool(item.get('namespaced')),
                                  tuple(item.get('verbs') or ()), item.get('singularName') or '', tuple(item.get('shortNames') or ())))
    return found


def resolve(wanted, resources):
    """(resources, unserved): each wanted kind as a served resource, in the order given, once each.

    A kind is a resource name, its singular, its Kind or a short name, any case, optionally qualified
    by its group (`ingresses.networking.k8s.io`, `SnapshotRule.k8s-snapshots.elsdoerfer.com`). A bare name served by
    several groups is the core group's, else the first group in the server's priority order.
    `unserved` is [(kind, reason)] for kinds the server does not serve as namespaced, listable objects.
    """
    groups = {resource.group for resource in resources}
    chosen, unserved = [], []
    for name in wanted:
        text = str(name).strip()
        bare, _dot, group = text.partition('.')
        qualified = bool(group) and group in groups
        candidates = [r for r in resources if bare.lower() in r.names() and (not qualified or r.group == group)] if qualified \
            else [r for r in resources if text.lower() in r.names()]
        if not candidates:
            unserved.append((text, 'the server does not serve this kind'))
            continue
        resource = candidates[0]
        if not resource.namespaced:
            unserved.append((text, '%s is cluster-scoped; only namespaced kinds are backed up' % resource.key))
        elif 'list' not in resource.verbs:
            unserved.append((text, '%s cannot be listed' % resource.key))
        elif resource not in chosen:
            chosen.append(resource)
    return chosen, unserved


# ------------------------------------------------------------------------------------ stripping

def left_out_reason(obj, resource):
    """Why an object is not backed up, or None: a controller recreates it, or it belongs to this cluster only."""
    metadata = obj.get('metadata') or {}
    controllers = controllers_of(metadata)
    if controllers:
        return 'controlled by %s %s' % (controllers[0].get('kind'), controllers[0].get('name'))
    if resource.key == 'secrets' and obj.get('type') == SERVICE_ACCOUNT_TOKEN:
        return 'service account token (issued by this cluster)'
    if resource.key == 'configmaps' and metadata.get('name') == CLUSTER_PUBLISHED_CONFIGMAP:
        return "this cluster's CA, published by the cluster"
    return None


def controllers_of(metadata):
    """The ownerReferences of an object's metadata that are its controller (one at most, unless an archive was made up)."""
    owners = metadata.get('ownerReferences') if isinstance(metadata, dict) else None
    return [owner for owner in owners if isinstance(owner, dict) and owner.get('controller')] if isinstance(owners, list) else []


def reason_code(reason):
    """The counted category of a left_out_reason."""
    if reason.startswith('controlled by'):
        return 'controlled'
    return 'service-account-token' if reason.startswith('service account token') else 'cluster-published'


def _fields_of(entry):
    fields = entry.get('fieldsV1') if isinstance(entry, dict) else None
    return fields if isinstance(fields, dict) else {}


def asked_service_fields(managed_fields):
    """(spec fields, ports with a node port) that some manager set, from `managedFields`.

    The apiserver's allocators (cluster IPs, node ports, IP families) are no manager: a value only the
    server filled in appears in no entry. Ports are (port, protocol), as the ports list is keyed.
    """
    fields, node_ports = set(), set()
    for entry in managed_fields or ():
        spec = _fields_of(entry).get('f:spec') or {}
        fields.update(name[2:] for name in spec if name.startswith('f:'))
        for key, port in (spec.get('f:ports') or {}).items():
            if not key.startswith('k:') or 'f:nodePort' not in (port or {}):
                continue
            try:
                identity = json.loads(key[2:])
            except ValueError:
                continue
            node_ports.add((identity.get('port'), identity.get('protocol', 'TCP')))
    return fields, node_ports


def strip(obj, resource):
    """A copy of `obj` that applies to another cluster: no status, no bookkeeping, nothing allocated here."""
    metadata = {name: value for name, value in (obj.get('metadata') or {}).items() if name not in STRIPPED_METADATA}
    annotations = {name: value for name, value in (metadata.get('annotations') or {}).items() if name not in STRIPPED_ANNOTATIONS}
    if annotations:
        metadata['annotations'] = annotations
    else:
        metadata.pop('annotations', None)
    stripped = {'apiVersion': obj.get('apiVersion') or resource.api_version, 'kind': obj.get('kind') or resource.kind, 'metadata': metadata}
    stripped.update((name, value) for name, value in obj.items() if name not in ('apiVersion', 'kind', 'metadata', 'status'))
    if resource.key == CLAIMS_KEY:
        return unbound_claim(stripped)
    spec = stripped.get('spec')
    if isinstance(spec, dict):
        if resource.key == 'services':
            stripped['spec'] = _service_spec(spec, (obj.get('metadata') or {}).get('managedFields'))
        elif isinstance(spec.get('volumeClaimTemplates'), list):
            stripped['spec'] = dict(spec, volumeClaimTemplates=[_claim_template(template) for template in spec['volumeClaimTemplates']])
    return stripped


def unbound_claim(obj):
    """A copy of a PersistentVolumeClaim without what bound it to a volume here: no spec.volumeName, no bind annotations."""
    metadata = dict(obj.get('metadata') or {})
    annotations = {name: value for name, value in (metadata.get('annotations') or {}).items() if name not in CLAIM_BIND_ANNOTATIONS}
    if annotations:
        metadata['annotations'] = annotations
    else:
        metadata.pop('annotations', None)
    claim = dict(obj, metadata=metadata)
    if isinstance(claim.get('spec'), dict):
        claim['spec'] = {name: value for name, value in claim['spec'].items() if name != 'volumeName'}
    return claim


def claim_volume(claim):
    """How a restored claim gets its volume, for the result."""
    storage_class = (claim.get('spec') or {}).get('storageClassName')
    if storage_class == '':
        return 'binds an existing volume that matches it (storageClassName is empty); none is provisioned'
    return 'provisioned anew by %s' % ('storage class %s' % storage_class if storage_class else 'the default storage class')


def restore_skip_reason(obj, resource):
    """Why an archived object is never restored, or None: backups never hold a service account token (the cluster
    issues them, for its own keys), so one in an archive was put there by hand."""
    if resource is None:
        return None
    if resource.key == 'secrets' and obj.get('type') == SERVICE_ACCOUNT_TOKEN:
        return 'service account token: issued by the cluster, never restored'
    # What a backup of ours leaves out, which a kube-backup dump holds: a controller's object restored beside its
    # restored controller is a duplicate (a Deployment's old ReplicaSet runs its pods twice); the cluster's CA is this one's.
    reason = left_out_reason(obj, resource)
    return '%s: never restored' % reason if reason else None


def _service_spec(spec, managed_fields):
    asked, node_ports = asked_service_fields(managed_fields)
    headless = spec.get('clusterIP') == 'None'
    kept = {name: value for name, value in spec.items()
            if name not in ALLOCATED_SERVICE_FIELDS or name in asked or (headless and name in ('clusterIP', 'clusterIPs'))}
    if isinstance(spec.get('ports'), list):
        kept['ports'] = [port if not isinstance(port, dict) or (port.get('port'), port.get('protocol', 'TCP')) in node_ports
                         else {name: value for name, value in port.items() if name != 'nodePort'} for port in spec['ports']]
    return kept


def _claim_template(template):
    if not isinstance(template, dict):
        return template
    template = {name: value for name, value in template.items() if name != 'status'}
    if isinstance(template.get('metadata'), dict):
        template['metadata'] = {name: value for name, value in template['metadata'].items() if name != 'creationTimestamp'}
    return template


def selected_namespace(namespace, namespaces, excluded):
    """Whether a namespace is backed up: in `namespaces` when given, and never in `excluded`."""
    return (not namespaces or namespace in namespaces) and namespace not in excluded


# ------------------------------------------------------------------------------------ names

# A namespace name is a DNS-1123 label (the apiserver's rule); any object's name is at least a path segment.
DNS_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')


def namespace_name_problem(name):
    """What makes `name` no namespace name (said after the name), or None."""
    if not isinstance(name, str) or not DNS_LABEL.match(name):
        return ('is not a valid namespace name (at most 63 lower-case letters, digits and "-", starting and ending with a '
                'letter or digit)')
    return None


def object_name_problem(name):
    """What makes `name` no object name of any kind, or None: the apiserver refuses it in a path whatever the kind."""
    if not name or name in ('.', '..') or '/' in name or '%' in name or len(name) > 253:
        return 'is not a valid object name (no "/" or "%", not "." or "..", at most 253 characters)'
    return None


def backup_name(when):
    return 'backup_%s' % when.astimezone(datetime.timezone.utc).strftime(NAME_TIME)


def backup_time(key, prefix):
    """The UTC time in a key directly under `prefix` named `backup_YYYYMMDDTHHMMSSZ[.tar.gz[.enc]]`, else None."""
    if not key.startswith(prefix):
        return None
    match = BACKUP_NAME.match(key[len(prefix):])
    if not match:
        return None
    try:
        return datetime.datetime.strptime(match.group('time'), NAME_TIME).replace(tzinfo=datetime.timezone.utc)
    except ValueError:  # backup_99999999T999999Z: the form, but no time
        return None


def backups_under(keys, prefix):
    """{key: time} of the backups among `keys`; every other key under the prefix is ignored."""
    found = {}
    for key in keys:
        when = backup_time(key, prefix)
        if when is not None:
            found[key] = when
    return found


def newest(backups):
    """The key of the newest backup by the time in its name (the key breaks a tie), or None."""
    return max(backups, key=lambda key: (backups[key], key)) if backups else None


def split_future(backups, now):
    """({key: time} of the backups not later than now + FUTURE_MARGIN, sorted [keys] of those dated after it).

    Future-dated keys are left out of the newest-backup choice, the interval check and retention (neither kept as the
    newest nor deleted): one planted key must not expire every real backup or stop new ones.
    """
    limit = now + FUTURE_MARGIN
    return {key: when for key, when in backups.items() if when <= limit}, sorted(key for key, when in backups.items() if when > limit)


# ------------------------------------------------------------------------------------ archive

def member_path(namespace, resource_key, name):
    """Where an object is in a backup, as the restore reads it: <namespace>/<kind>/<name>.yaml, a namespace itself
    at <namespace>/namespaces/<namespace>.yaml (stored as <namespace>/00-namespace.yaml, see archive_name)."""
    return '%s/%s/%s.yaml' % (namespace, resource_key, name)


def archive_name(path):
    """The member name of a member_path in the archive: a namespace is stored as <namespace>/00-namespace.yaml."""
    namespace, _slash, rest = path.partition('/')
    return '%s/%s' % (namespace, NAMESPACE_FILE) if rest == '%s/%s.yaml' % (NAMESPACES_KEY, namespace) else path


def path_of_member(name, obj):
    """The member_path of an archive member (archive_name undone); a name that is no namespace file is kept as it is."""
    namespace, _slash, rest = name.partition('/')
    if rest == NAMESPACE_FILE and isinstance(obj, dict) and obj.get('kind') == 'Namespace' and obj.get('apiVersion') == 'v1':
        return member_path(namespace, NAMESPACES_KEY, namespace)
    return name


def dump(obj):
    """An object as the text of its .yaml file: YAML in its JSON form, which every YAML parser and kubectl read, ten
    times faster to write than block style (1.5 s of a 5,000-object backup otherwise)."""
    return json.dumps(obj, indent=1, ensure_ascii=False).encode() + b'\n'


def write_archive(fileobj, index, entries):
    """A tar.gz stream on `fileobj`: the index first, then each (path, object) as YAML."""
    # gzip level 6 (tarfile's stream mode would take 9: twice the time for a few per cent).
    with gzip.GzipFile(fileobj=fileobj, mode='wb', compresslevel=6, mtime=0) as packed, tarfile.open(fileobj=packed, mode='w|') as archive:
        index_text = yaml.dump(index, Dumper=_DUMPER, default_flow_style=False, sort_keys=False).encode()
        for path, data in [(INDEX_NAME, index_text)] + [(archive_name(path), dump(obj)) for path, obj in entries]:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))


def read_archive(fileobj, name):
    """(index, [(path, object)]) of a whole archive; ArchiveError naming `name` and what is wrong.

    The archive is read to the end before anything is applied: a corrupt or cut one applies nothing.
    The gzip stream is checked whole first (tarfile reading a stream takes a cut one for its end).
    An archive without our index whose files are *.json at its top is kube-backup's: its index is
    {'format': KUBE_BACKUP_FORMAT}, and its entries have no path yet (None): see kube_backup_path.
    """
    index, entries, json_files, others = None, [], [], []
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as tar:
        try:
            _unpack(fileobj, tar, name)
            tar.seek(0)
            with tarfile.open(fileobj=tar, mode='r:') as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    member_name = member.name[2:] if member.name.startswith('./') else member.name
                    stream = '/' not in member_name and member_name.endswith('.json')
                    if member.size > (MAX_STREAM_BYTES if stream else MAX_MEMBER_BYTES):
                        raise ArchiveError('%s: %s holds %d bytes, more than %s (%d): not a backup of ours'
                                           % (name, member.name, member.size, 'a file of kube-backup may' if stream else 'any object',
                                              MAX_STREAM_BYTES if stream else MAX_MEMBER_BYTES))
                    data = archive.extractfile(member).read()
                    if member_name in (INDEX_NAME, FORMAT_1_INDEX_NAME):
                        index = _load(data, name, member_name)
                    elif stream:
                        json_files.append((member_name, data))
                    else:
                        others.append((member_name, data))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise ArchiveError('%s is not a readable tar.gz archive: %s' % (name, exc)) from exc
    if index is None and json_files and not others:
        return {'format': KUBE_BACKUP_FORMAT, 'objects': None}, kube_backup_objects(json_files, name)
    if not isinstance(index, dict) or index.get('format') not in READABLE_FORMATS:
        raise ArchiveError('%s has no %s of format %s: not a backup of k8s_resource_backup, nor one of kube-backup'
                           % (name, INDEX_NAME, ' or '.join(str(f) for f in READABLE_FORMATS)))
    for member_name, data in others + json_files:
        value = _load(data, name, member_name)
        entries.append((path_of_member(member_name, value), value))
    if index.get('objects') != len(entries):
        raise ArchiveError('%s holds %d objects where its index says %s: the archive is incomplete' % (name, len(entries), index.get('objects')))
    for path, obj in entries:
        problem = manifest_problem(path, obj)
        if problem:
            raise ArchiveError('%s: %s: %s' % (name, path, problem))
    return index, entries


def kube_backup_objects(json_files, name):
    """[(None, object)] of kube-backup's files in name order (00-ns.json, then 01-dump.json), as its restore applies
    them: each file a stream of JSON values, each an object or a List of them."""
    decoder = json.JSONDecoder()
    found = []
    for member_name, data in sorted(json_files):
        try:
            text = data.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise ArchiveError('%s: %s is not UTF-8 text: %s' % (name, member_name, exc)) from exc
        position, count = 0, 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text):
                break
            try:
                value, position = decoder.raw_decode(text, position)
            except (ValueError, RecursionError) as exc:
                raise ArchiveError('%s: %s: object %d is not valid JSON: %s' % (name, member_name, count + 1, exc)) from exc
            count += 1
            if too_deep(value):
                raise ArchiveError('%s: %s: object %d is nested more than %d levels deep: not an object of a cluster'
                                   % (name, member_name, count, MAX_DEPTH))
            items = value.get('items') if isinstance(value, dict) and value.get('kind') == 'List' else [value]
            for item in items if isinstance(items, list) else [items]:
                problem = kube_backup_problem(item)
                if problem:
                    raise ArchiveError('%s: %s: object %d: %s' % (name, member_name, count, problem))
                found.append((None, item))
    return found


def kube_backup_problem(obj):
    """What makes an object of a kube-backup file unusable, or None; every one but a Namespace must say its namespace
    (kube-backup's restore would put it in the default namespace of whoever runs it)."""
    if not isinstance(obj, dict):
        return 'not a mapping'
    metadata = obj.get('metadata')
    if not all(isinstance(obj.get(field), str) and obj[field] for field in ('apiVersion', 'kind')) or not isinstance(metadata, dict) \
            or not isinstance(metadata.get('name'), str) or not metadata['name']:
        return 'apiVersion, kind and metadata.name are required (strings)'
    if not (obj['kind'] == 'Namespace' and obj['apiVersion'] == 'v1') and not (isinstance(metadata.get('namespace'), str) and metadata['namespace']):
        return '%s %s %s has no metadata.namespace' % (obj['apiVersion'], obj['kind'], metadata['name'])
    return None


def _unpack(fileobj, target, name):
    """Decompress the gzip stream into `target`, refusing one that unpacks to more than MAX_ARCHIVE_BYTES."""
    total = 0
    with gzip.GzipFile(fileobj=fileobj, mode='rb') as unpacked:
        while True:
            block = unpacked.read(1024 * 1024)
            if not block:
                return
            total += len(block)
            if total > MAX_ARCHIVE_BYTES:
                raise ArchiveError('%s unpacks to more than %d bytes: refused' % (name, MAX_ARCHIVE_BYTES))
            target.write(block)


if yaml is not None:
    class _NoAliasLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
        """SafeLoader without aliases: nothing we write uses them, and nested aliases expand exponentially (a YAML bomb)."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(None, None, 'aliases (*name) are not accepted in a backup', self.peek_event().start_mark)
            return super().compose_node(parent, index)


def _load(data, name, member):
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        try:  # written or edited as block YAML
            value = yaml.load(data, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
        except (yaml.YAMLError, RecursionError) as exc:
            raise ArchiveError('%s: %s is not valid YAML: %s' % (name, member, yaml_problem(exc))) from exc
    if too_deep(value):
        raise ArchiveError('%s: %s is nested more than %d levels deep: not an object of a cluster' % (name, member, MAX_DEPTH))
    return value


def yaml_problem(exc):
    """What a YAML error says and where, without the text around it, which PyYAML quotes: a Secret's value otherwise
    ends in the task's message and every log of it."""
    problem = getattr(exc, 'problem', None) or getattr(exc, 'context', None)
    if not problem:
        return str(exc) if isinstance(exc, RecursionError) else type(exc).__name__
    mark = getattr(exc, 'problem_mark', None) or getattr(exc, 'context_mark', None)
    return '%s (line %d, column %d)' % (problem, mark.line + 1, mark.column + 1) if mark else problem


def too_deep(value, limit=MAX_DEPTH):
    """Whether lists and mappings in `value` nest more than `limit` levels (walked without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                pending.append((child, depth + 1))
    return False


def manifest_problem(path, obj):
    """What makes an archived object unusable, or None: the path must be <namespace>/<kind>/<name>.yaml of the object."""
    if not isinstance(obj, dict):
        return 'not a mapping'
    metadata = obj.get('metadata')
    if not obj.get('apiVersion') or not obj.get('kind') or not isinstance(metadata, dict) or not metadata.get('name'):
        return 'apiVersion, kind and metadata.name are required'
    if not all(isinstance(obj[field], str) for field in ('apiVersion', 'kind')) or not isinstance(metadata['name'], str):
        return 'apiVersion, kind and metadata.name must be strings'
    parts = path.split('/')
    is_namespace = obj['kind'] == 'Namespace' and obj['apiVersion'] == 'v1'
    namespace = metadata['name'] if is_namespace else metadata.get('namespace')
    if len(parts) != 3 or parts[0] != namespace:
        return "the path does not match the object's namespace %r" % namespace
    if parts[2] != metadata['name'] + '.yaml':
        return 'the file name does not match metadata.name %r' % metadata['name']
    if (parts[1] == NAMESPACES_KEY) != is_namespace:
        return 'only a v1 Namespace is archived under %s/' % NAMESPACES_KEY
    return None


def served_problem(path, obj, resource):
    """What forbids restoring an archived object as the served `resource`, or None.

    The path's kind must be the object's: the restore's filters read the path, and a ClusterRoleBinding filed
    under configmaps/ must not pass them. Cluster-scoped kinds are never restored, but for the Namespace itself.
    """
    if resource is None:
        return None  # reported per object as not served
    kind = path.split('/')[1]
    if kind != resource.key:
        return 'the path says %s, the object is %s %s (%s)' % (kind, obj['apiVersion'], obj['kind'], resource.key)
    if not resource.namespaced and resource.key != NAMESPACES_KEY:
        return '%s is cluster-scoped; only namespaced objects and namespaces are restored' % resource.key
    return None


# ------------------------------------------------------------------------------------ restore

def resource_of(obj, resources):
    """The served Resource of an archived object (by apiVersion and kind), or None when the server lacks it."""
    group, _slash, version = obj['apiVersion'].rpartition('/')
    for resource in resources:
        if resource.group == group and resource.version == version and resource.kind == obj['kind']:
            return resource
    # Another version of the same group and kind: the server converts.
    for resource in resources:
        if resource.group == group and resource.kind == obj['kind']:
            return resource
    return None


def rank_of(entry):
    """The apply rank of an entry (path, object, resource); a kind the server does not serve goes with the custom resources."""
    return entry[2].rank if entry[2] is not None else CUSTOM_RANK


def restore_order(entries):
    """Entries (path, object, resource) in apply order: namespaces, what others mount, services, workloads, custom
    resources; by path within a rank, so that runs are repeatable."""
    return sorted(entries, key=lambda entry: (rank_of(entry), entry[0]))
