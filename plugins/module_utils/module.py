# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: option specs, the client, time, failures."""

from __future__ import annotations

import datetime
import platform
import sys
import traceback

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib
from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle, k8s, k8s_wait, retention
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import Registry, option_bounds, option_spec
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import Lease, LeaseInvalid, write_under_lease
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s_service import get_or_none
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import bounds_problem, listed
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import BACKUP_LABEL, DELTAS_ANNOTATION, Options, parse_targets, screen
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import TargetError

# kubernetes.core's names and K8S_AUTH_* variables, so module_defaults, inventories and environments carry over.
# Environment values come in through the argument spec so that no_log hides a token from the environment too.
# Every option and variable kubernetes.core reads is here (tests/unit/test_auth_options.py holds the list against
# its documented one): honoured, or refused by name in k8s.client_from_params (REFUSED_AUTH_OPTIONS), never ignored.
# Where kubernetes.core reads two variables for one option, the option's own name comes first, as it does.
AUTH_SPEC = {
    # A path (several joined by ':'), or the kubeconfig itself as a mapping, as kubernetes.core takes it.
    'kubeconfig': {'type': 'raw', 'fallback': (env_fallback, ['K8S_AUTH_KUBECONFIG'])},
    'context': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_CONTEXT'])},
    'host': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_HOST'])},
    'api_key': {'type': 'str', 'no_log': True, 'fallback': (env_fallback, ['K8S_AUTH_API_KEY'])},
    'username': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_USERNAME'])},
    'password': {'type': 'str', 'no_log': True, 'fallback': (env_fallback, ['K8S_AUTH_PASSWORD'])},
    'validate_certs': {'type': 'bool', 'aliases': ['verify_ssl'], 'fallback': (env_fallback, ['K8S_AUTH_VALIDATE_CERTS', 'K8S_AUTH_VERIFY_SSL'])},
    'ca_cert': {'type': 'path', 'aliases': ['ssl_ca_cert'], 'fallback': (env_fallback, ['K8S_AUTH_CA_CERT', 'K8S_AUTH_SSL_CA_CERT'])},
    'client_cert': {'type': 'path', 'aliases': ['cert_file'], 'fallback': (env_fallback, ['K8S_AUTH_CLIENT_CERT', 'K8S_AUTH_CERT_FILE'])},
    'client_key': {'type': 'path', 'aliases': ['key_file'], 'no_log': False, 'fallback': (env_fallback, ['K8S_AUTH_CLIENT_KEY', 'K8S_AUTH_KEY_FILE'])},
    # A proxy URL can carry a user and password.
    'proxy': {'type': 'str', 'no_log': True, 'fallback': (env_fallback, ['K8S_AUTH_PROXY'])},
    'no_proxy': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_NO_PROXY'])},
    # apply_defaults: the suboptions' variables are read when the dict is not given.
    'proxy_headers': {'type': 'dict', 'apply_defaults': True, 'options': {
        'proxy_basic_auth': {'type': 'str', 'no_log': True, 'fallback': (env_fallback, ['K8S_AUTH_PROXY_HEADERS_PROXY_BASIC_AUTH'])},
        'basic_auth': {'type': 'str', 'no_log': True, 'fallback': (env_fallback, ['K8S_AUTH_PROXY_HEADERS_BASIC_AUTH'])},
        'user_agent': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_PROXY_HEADERS_USER_AGENT'])},
    }},
    'persist_config': {'type': 'bool', 'fallback': (env_fallback, ['K8S_AUTH_PERSIST_CONFIG'])},
    'impersonate_user': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_IMPERSONATE_USER'])},
    # 'a,b' from the environment is two groups, as kubernetes.core splits it.
    'impersonate_groups': {'type': 'list', 'elements': 'str', 'fallback': (env_fallback, ['K8S_AUTH_IMPERSONATE_GROUPS'])},
}

TARGETS_SPEC = {'targets': {'type': 'list', 'elements': 'dict'}}

DISCOVERY_SPEC = {
    'namespace': {'type': 'str'},
    'pvc': {'type': 'str'},
    'pv': {'type': 'str'},
    'sources': {'type': 'list', 'elements': 'str', 'choices': ['annotation', 'label', 'rule'],
                'default': ['annotation', 'label', 'rule']},
    'annotation': {'type': 'str', 'default': DELTAS_ANNOTATION},
    'label': {'type': 'str', 'default': BACKUP_LABEL},
    'label_value': {'type': 'str'},
    'label_policy': {'type': 'str'},
    'snapshot_class': {'type': 'str'},
    'policy': {'type': 'str'},
}


def discovery_constraints(spec):
    """A one-off names one claim (namespace + pvc) or one volume (pv), and then discovers nothing else."""
    exclusive = [('pvc', 'pv')] + ([('targets', 'pvc'), ('targets', 'pv')] if 'targets' in spec else [])
    return {'required_by': {'pvc': 'namespace'}, 'mutually_exclusive': exclusive}


# How a run writes: shared by the modules that create or delete snapshots.
WRITE_SPEC = {
    'concurrency': {'type': 'int', 'default': 20},
    'now': {'type': 'str'},
    'fail_on_problems': {'type': 'bool', 'default': True},
}

LEASE_SPEC = {
    'lease_name': {'type': 'str', 'default': 'kubesnap-cycle'},
    'lease_namespace': {'type': 'str', 'default': 'default'},
    'lease_duration': {'type': 'int', 'default': 900},
    'lease_wait': {'type': 'int', 'default': 0},
    'fail_on_lease_held': {'type': 'bool', 'default': False},
}

# The least and the greatest value each numeric option may take, checked before anything is listed. Beyond the
# greatest, times overflow (a timedelta, the renewal thread's wait) or make the stored Lease unreadable to other runs.
TEN_YEARS = 10 * 365 * 24 * 3600
ONE_DAY = 24 * 3600
BOUNDS = {'concurrency': (1, 1000), 'lease_duration': (1, ONE_DAY), 'lease_wait': (0, TEN_YEARS), 'wait_timeout': (0, TEN_YEARS),
          'stalled_after': (0, TEN_YEARS)}


def argument_spec(*groups, **own):
    """One module's spec: the shared groups it uses, the options of every backend, and its own options."""
    spec = {}
    for group in groups + (option_spec(), own):
        spec.update({name: dict(option) for name, option in group.items()})
    return spec


def nothing_found_warning(options):
    """What a discovery that found no volume to protect says: a run that protects nothing must not pass unnoticed."""
    where = ' in namespace %s' % options.namespace if options.namespace else ''
    hint = ''
    if 'label' in options.sources and not options.label_policy:
        hint = '; claims labelled %s are protected only with label_policy (snapshot_cycle_label_policy)' % options.label
    return 'no volume to protect found%s (sources: %s): this run protects nothing%s' % (where, ', '.join(options.sources), hint)


PROBLEMS_MSG = 'objects asked for protection but cannot get it'


def write_json(result, write, encode):
    """Write what print('\\n%s' % encode(result)) prints, in pieces: a top-level list element by element.

    `encode` turns one value into its JSON text (the module encoder's encode). The text is the same as the whole
    one (the separators are JSON's defaults, ', ' and ': '), but no piece is larger than one element: a volume.
    """
    write('\n{')
    for index, (key, value) in enumerate(result.items()):
        write('%s%s: ' % (', ' if index else '', encode(key)))
        # A list exactly: the encoder may turn a subclass into something else.
        if type(value) is list:  # pylint: disable=unidiomatic-typecheck
            write('[')
            for position, element in enumerate(value):
                write('%s%s' % (', ' if position else '', encode(element)))
            write(']')
        else:
            write(encode(value))
    write('}\n')


def exit_or_fail(module, result, failures=(), msg='', problems=()):
    """The one way a module ends: every volume has been tried; fail at the end, listing the volumes (and, if asked,
    problems) at fault, else exit with `result`. Both carry `api_calls`, and msg lists at most MSG_ITEMS of each.

    `msg` says what went wrong with the `failures`; problems get their own words, so that a run whose
    only fault is a bad annotation does not read as if a snapshot had failed.
    """
    result = dict(result, problems=[problem.as_dict() for problem in problems], api_calls=module.api_calls())
    shown = [str(problem) for problem in problems] if module.params.get('fail_on_problems') else []
    failures = list(failures) + ([module.lease_failure] if module.lease_failure else [])
    parts = [listed(msg, failures), listed(PROBLEMS_MSG, shown)]
    if failures or shown:
        module.fail_json(msg='; '.join(part for part in parts if part), failed_volumes=failures + shown, **result)
    module.exit_json(**result)


class KubesnapModule(AnsibleModule):
    """AnsibleModule with the collection's client, clock, targets and failure reporting."""

    def __init__(self, *args, bounds=None, pool_size=None, **kwargs):
        """`bounds`: the module's own numeric options' (least, most), checked with the shared BOUNDS; `pool_size`: the
        client's connections when the module makes more requests at once than its `concurrency`."""
        bounds = bounds or {}
        self._pool_size = pool_size or 0
        kwargs.setdefault('supports_check_mode', True)
        super().__init__(*args, **kwargs)
        self._hide_kubeconfig_secrets()
        if k8s.KUBERNETES_IMPORT_ERROR is not None:
            self.fail_json(msg=missing_required_lib('kubernetes >= %s' % k8s.MINIMUM_KUBERNETES), exception=str(k8s.KUBERNETES_IMPORT_ERROR))
        if k8s.version_problem():
            self.fail_json(msg="%s on %s's Python %s. Install it there (pip install 'kubernetes>=%s'), or point ansible_python_interpreter at a"
                           " Python that has it." % (k8s.version_problem(), platform.node(), sys.executable, k8s.MINIMUM_KUBERNETES))
        if not retention.HAS_ISODATE:
            self.fail_json(msg=missing_required_lib('isodate'), exception=str(retention.ISODATE_IMPORT_ERROR))
        self._client = None
        self._lease_failure = None
        problem = bounds_problem(self.params, dict(BOUNDS, **option_bounds(), **bounds))
        if problem:
            self.fail_json(msg=problem)

    def _hide_kubeconfig_secrets(self):
        """A kubeconfig given as a mapping (kubernetes.core takes one) carries credentials: hidden like no_log values."""
        # getattr: AnsibleModule may fail (a bad locale) before it has read the arguments.
        self.no_log_values.update(k8s.kubeconfig_secrets((getattr(self, 'params', None) or {}).get('kubeconfig')))

    def _set_lists_aside(self, result):
        """Take the result's top-level lists (the per-volume records: 560,000 values at 10,000 volumes) out of what
        AnsibleModule scrubs for no_log values, leaving empty lists in their places; `_record_module_result` puts them
        back scrubbed the same way, or as they are when there is nothing to hide. AnsibleModule copies every container
        of the result while it scrubs, even for no values at all (7 s and a second copy of the result at 10,000).
        `warnings` and `deprecations` stay: AnsibleModule replaces them with what warn() and deprecate() collected.
        Nothing is set aside where AnsibleModule prints the result without the hook (ansible-core 2.19.0): the lists
        would never come back."""
        hooked = '_record_module_result' in AnsibleModule._return_formatted.__code__.co_names
        self._lists_aside = {key: value for key, value in result.items() if hooked
                             and type(value) is list and key not in ('warnings', 'deprecations')}  # pylint: disable=unidiomatic-typecheck
        return dict(result, **{key: [] for key in self._lists_aside})

    def _record_module_result(self, o):
        """Print the result as AnsibleModule does, the same text written a volume at a time: printed whole, it is held
        twice more beside the result (the text and its bytes, 2 x 15 MB for snapshot_expire at 10,000 volumes)."""
        for key, value in getattr(self, '_lists_aside', {}).items():
            # remove_values with no values to remove changes nothing of JSON data: it only copies it.
            o[key] = remove_values(value, self.no_log_values) if self.no_log_values else value
        profile = getattr(basic, '_ANSIBLE_PROFILE', None)  # the serialization profile the controller asked for
        if profile is None:
            super()._record_module_result(o)
            return
        write_json(o, sys.stdout.write, get_module_encoder(profile, Direction.MODULE_TO_CONTROLLER)().encode)

    def warn(self, warning):
        """AnsibleModule.warn with the no_log values hidden: ansible-core 2.19 does not scrub warnings, and ours may quote
        an API or cloud error, which may quote what it was sent."""
        hidden = getattr(self, 'no_log_values', None)
        super().warn(remove_values(warning, hidden) if hidden and isinstance(warning, str) else warning)

    def _log_invocation(self):
        # Called by AnsibleModule.__init__ before it returns: the secrets are hidden before the invocation is logged.
        self._hide_kubeconfig_secrets()
        super()._log_invocation()

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = k8s.client_from_params(self.params, pool_size=max(8, self.params.get('concurrency') or 0, self._pool_size))
            except k8s.KubeError as exc:
                self.fail_json(msg=str(exc))
        return self._client

    @property
    def waiter(self):
        """The run's k8s_wait waiter; in check mode one that waits for nothing (nothing was written to wait for)."""
        return k8s_wait.waiter_for(None if self.check_mode else self.client, self.check_mode)

    def now(self, planning=True):
        """The run's clock: the `now` option when given and the run only plans, else the current UTC time.

        A run that creates snapshots names them and decides what is due by the real clock
        (`planning=False` outside check mode): a pretended time would name snapshots after it.
        """
        value = self.params.get('now')
        if value and not planning:
            self.warn('now is used only in check mode; this run creates by the current time')
        if not value or not planning:
            return datetime.datetime.now(datetime.timezone.utc)
        try:
            return retention.parse_timestamp(value)
        except ValueError as exc:
            self.fail_json(msg='now: %s' % exc)

    def discovery_options(self, label_needs_policy=True):
        p = self.params
        policy = p.get('policy')
        for name, value in (('label_policy', p.get('label_policy')), ('policy', policy)):
            if value:
                try:
                    retention.parse_policy(value)
                except retention.PolicyError as exc:
                    self.fail_json(msg='%s: %s' % (name, exc))
        return Options(annotation=p['annotation'], sources=tuple(p['sources']), label=p['label'], label_value=p.get('label_value'),
                       label_policy=p.get('label_policy'), snapshot_class=p.get('snapshot_class'), namespace=p.get('namespace'),
                       pvc=p.get('pvc'), pv=p.get('pv'), policy=policy, label_needs_policy=label_needs_policy)

    def given_targets(self):
        """Targets passed from k8s_pv_info, or None when the module should discover them; a malformed entry, or two for the
        same volume, fails the task before anything is listed or written."""
        try:
            return parse_targets(self.params.get('targets'))
        except TargetError as exc:
            self.fail_json(msg='%s: %s' % (exc.field, exc.reason))

    def lease(self):
        p = self.params
        return Lease(self.client, p['lease_namespace'], p['lease_name'], p['lease_duration'], p['lease_wait'])

    def write_under_lease(self, work, result, lease=None):
        """lease.write_under_lease(`lease`, the run's Lease by default, work): `work` (a LeasedWrite) returned with how it went.

        When another run holds the lease, RV(lease_held) is set; the task then fails at the end with
        `fail_on_lease_held` or when `work.must_write` (a forced snapshot), and warns otherwise. A lease
        that cannot be released is a warning: the run's writes are done and reported. An unreadable
        Lease fails the task now.
        """
        try:
            write_under_lease(lease or self.lease(), work)
        except LeaseInvalid as exc:
            self.fail_json(msg=str(exc), **result)
        if work.release_failure:
            self.warn(work.release_failure)
        if work.held_by:
            result['lease_held'] = work.held_by
            message = '%s; nothing was written' % work.held_by
            if self.params.get('fail_on_lease_held') or work.must_write:
                self._lease_failure = message
            else:
                self.warn(message)
        return work

    def api_calls(self):
        # AnsibleModule's own argument checks fail before __init__ has made a client.
        client = getattr(self, '_client', None)
        return dict(client.requests) if client is not None else {}

    def targets(self, label_needs_policy=True, orphans=False):
        """(inventory, registry, targets, problems): the given targets, or discovery's (warnings emitted).

        Given targets are checked against the live volumes and claims, so the inventory is listed
        whatever the targets (expiry needs it anyway for orphans and the claims' dataSources).
        A run that plans `orphans` always lists the SnapshotRules: a rule's disk is a live volume
        whatever the targets and sources, and its snapshots are no orphans.
        """
        given = self.given_targets()
        if given is not None:
            # A disk target is checked against its SnapshotRule: rules are listed then, and for orphans.
            inventory = cycle.list_inventory(self.client, self.params.get('namespace'), rules=orphans or any(target.pv is None for target in given))
            registry = Registry.for_run(self.params, self.client, inventory)
            return (inventory, registry) + screen(given, inventory, registry, self.params.get('namespace'))
        options = self.discovery_options(label_needs_policy)
        inventory, registry, discovery = cycle.discover_targets(self.client, options, self.params, orphans=orphans)
        self._check_namespace(options, inventory)
        for warning in discovery.warnings:
            self.warn(warning)
        if not discovery.targets and not discovery.problems and not (options.pvc or options.pv):
            self.warn(nothing_found_warning(options))
        return inventory, registry, discovery.targets, discovery.problems

    def _check_namespace(self, options, inventory):
        """Say when `namespace` names no namespace: a one-off claim fails, discovery warns.

        The namespace is read only when what was looked for is missing, so a normal run costs no request.
        """
        if not options.namespace or options.pv:
            return
        found = [claim for claim in inventory.pvcs if not options.pvc or claim['metadata']['name'] == options.pvc]
        if found or self.namespace_exists(options.namespace):
            return
        if options.pvc:
            self.fail_json(msg='namespace %s does not exist, so it has no claim %s' % (options.namespace, options.pvc),
                           api_calls=self.api_calls())
        self.warn('namespace %s does not exist: no volume of it is protected' % options.namespace)

    def namespace_exists(self, name):
        try:
            return get_or_none(self.client, k8s.resource_path('v1', 'namespaces', name=name)) is not None
        except k8s.KubeError as exc:
            if exc.status == 403:  # an account that may not read namespaces: nothing known, nothing to say
                return True
            raise

    def exit_or_fail(self, failures, msg, problems=(), **result):
        """module.exit_or_fail(self, result, failures, msg, problems)."""
        exit_or_fail(self, result, failures, msg, problems)

    @property
    def lease_failure(self):
        """Why the run must fail because another run held the lease (fail_on_lease_held, or a run that must write), or None."""
        return self._lease_failure

    def exit_json(self, **result):
        result.setdefault('api_calls', self.api_calls())
        super().exit_json(**self._set_lists_aside(result))

    def fail_json(self, msg, **result):
        """Fail; every failure reports the API calls made up to it."""
        # AnsibleModule fails a bad argument before _log_invocation, and the failure carries the invocation (the
        # kubeconfig mapping among its module_args): its credentials are hidden here too.
        self._hide_kubeconfig_secrets()
        result.setdefault('api_calls', self.api_calls())
        super().fail_json(msg=msg, **self._set_lists_aside(result))

    def fail(self, error, **result):
        """Fail for a KubesnapError (naming its object and field) or an API error, with what the run has so far."""
        if isinstance(error, KubesnapError):
            self.fail_json(msg=str(error), **dict({'field': error.field} if error.field else {}, **result))
            return
        self.fail_api(error, **result)

    def fail_api(self, exc, **result):
        what = 'Kubernetes API error' if isinstance(exc, k8s.KubeError) else 'cloud API error'
        self.fail_json(msg='%s: %s' % (what, exc), exception=traceback.format_exc(), **result)
