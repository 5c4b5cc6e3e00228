# Every connection option and K8S_AUTH_* variable kubernetes.core reads is ours too: honoured, or refused by name
# (k8s.REFUSED_AUTH_OPTIONS), never ignored - so a module_defaults group shared with kubernetes.core works.
# The reference list is checked in (tests/unit/data/kubernetes_core_auth_options.yml, its source noted there).
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.kubesnap.snapshots.plugins.doc_fragments.k8s_auth import ModuleDocFragment
from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC

REFERENCE = yaml.safe_load((Path(__file__).parent / 'data' / 'kubernetes_core_auth_options.yml').read_text(encoding='utf-8'))
DOCUMENTED = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']


def variables(spec):
    fallback = spec.get('fallback')
    return list(fallback[1]) if fallback else []


@pytest.mark.parametrize('name', sorted(REFERENCE['options']))
def test_each_kubernetes_core_option_is_ours_with_its_type_aliases_and_variables(name):
    theirs, ours = REFERENCE['options'][name], AUTH_SPEC.get(name)
    assert ours is not None, '%s (kubernetes.core) is neither honoured nor refused' % name
    assert ours.get('type', 'str') == theirs['type'], name
    assert ours.get('elements') == theirs.get('elements'), name
    assert sorted(ours.get('aliases', [])) == sorted(theirs.get('aliases', [])), name
    # kubernetes.core reads the option's own variable first, then the client's name for it.
    assert variables(ours) == theirs.get('env', []), name
    for suboption, their_sub in (theirs.get('suboptions') or {}).items():
        assert variables(ours['options'][suboption]) == their_sub['env'], '%s.%s' % (name, suboption)
    assert name in DOCUMENTED, '%s is not in the k8s_auth doc fragment' % name


def test_no_connection_option_of_ours_is_unknown_to_kubernetes_core():
    # Modules take other options (aws_*, gce_*); the connection ones are exactly kubernetes.core's.
    assert set(AUTH_SPEC) == set(REFERENCE['options'])


def test_the_variables_we_read_are_exactly_kubernetes_cores():
    theirs = {variable for option in REFERENCE['options'].values() for variable in option.get('env', [])}
    theirs |= {variable for option in REFERENCE['options'].values() for sub in (option.get('suboptions') or {}).values()
               for variable in sub['env']}
    ours = {variable for spec in AUTH_SPEC.values() for variable in variables(spec)}
    ours |= {variable for spec in AUTH_SPEC.values() for sub in (spec.get('options') or {}).values() for variable in variables(sub)}
    assert ours == theirs


def validated(monkeypatch, environment, params=None):
    for spec in AUTH_SPEC.values():
        for variable in variables(spec) + [v for sub in (spec.get('options') or {}).values() for v in variables(sub)]:
            monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    result = ArgumentSpecValidator(AUTH_SPEC).validate(params or {})
    assert not result.error_messages, result.error_messages
    return result


@pytest.mark.parametrize('option', sorted(k8s.REFUSED_AUTH_OPTIONS))
@pytest.mark.parametrize('where', ['option', 'environment'])
def test_a_refused_option_fails_naming_itself_from_the_option_or_its_variable(monkeypatch, option, where):
    given = {option: 'someone'} if where == 'option' else {}
    environment = {} if where == 'option' else {REFERENCE['options'][option]['env'][0]: 'someone'}
    params = validated(monkeypatch, environment, given).validated_parameters
    with pytest.raises(k8s.ConfigError) as raised:
        k8s.client_from_params(dict(params, host='https://127.0.0.1:1'))
    assert str(raised.value).startswith(option + ':') and 'K8S_AUTH_' + option.upper() in str(raised.value)


def test_impersonation_from_the_environment_splits_groups_on_commas(monkeypatch):
    params = validated(monkeypatch, {'K8S_AUTH_IMPERSONATE_USER': 'jane', 'K8S_AUTH_IMPERSONATE_GROUPS': 'ops,backup'}).validated_parameters
    assert params['impersonate_user'] == 'jane' and params['impersonate_groups'] == ['ops', 'backup']
    headers = k8s.impersonation_headers(params['impersonate_user'], params['impersonate_groups'])
    assert headers.getlist('Impersonate-User') == ['jane'] and headers.getlist('Impersonate-Group') == ['ops', 'backup']


def test_groups_without_a_user_are_refused_naming_both_options():
    with pytest.raises(k8s.ConfigError, match='impersonate_groups: .*impersonate_user'):
        k8s.impersonation_headers(None, ['ops'])
    assert k8s.impersonation_headers(None, []) is None


def test_proxy_headers_come_from_their_variables_and_stay_hidden(monkeypatch):
    result = validated(monkeypatch, {'K8S_AUTH_PROXY_HEADERS_PROXY_BASIC_AUTH': 'me:s3cret-pw', 'K8S_AUTH_PROXY_HEADERS_USER_AGENT': 'ua/1'})
    assert result.validated_parameters['proxy_headers'] == {'proxy_basic_auth': 'me:s3cret-pw', 'basic_auth': None, 'user_agent': 'ua/1'}
    assert 'me:s3cret-pw' in result._no_log_values


def test_a_kubeconfig_mapping_has_its_credentials_hidden():
    config = {'users': [{'name': 'u', 'user': {'token': 'tok-123456', 'client-key-data': 'KEYDATA',
                                               'exec': {'command': 'aws', 'env': [{'name': 'AWS_PROFILE', 'value': 'prod-secret'}]},
                                               'auth-provider': {'config': {'refresh-token': 'refresh-1'}}}}]}
    assert k8s.kubeconfig_secrets(config) == {'tok-123456', 'KEYDATA', 'prod-secret', 'refresh-1'}
    assert k8s.kubeconfig_secrets('/path/to/config') == set()


def test_a_kubeconfig_mappings_proxy_url_credentials_are_hidden():
    config = {'clusters': [{'name': 'c', 'cluster': {'server': 'https://h', 'proxy-url': 'http://me:p4ss@proxy:3128'}},
                           {'name': 'd', 'cluster': {'server': 'https://h', 'proxy-url': 'http://proxy:3128'}}], 'users': []}
    assert k8s.kubeconfig_secrets(config) == {'http://me:p4ss@proxy:3128', 'p4ss'}


def kubeconfig_mapping(**user):
    return {'current-context': 'c', 'contexts': [{'name': 'c', 'context': {'cluster': 'c', 'user': 'u'}}],
            'clusters': [{'name': 'c', 'cluster': {'server': 'https://127.0.0.1:1'}}],
            'users': [{'name': 'u', 'user': dict({'token': 't'}, **user)}]}


def test_a_kubeconfig_users_impersonation_fields_become_headers_the_options_override():
    config = kubeconfig_mapping(**{'as': 'jane', 'as-groups': ['ops', 'backup'], 'as-uid': '42', 'as-user-extra': {'scopes.example/a b': ['x', 'y']}})
    headers = k8s.client_from_params({'kubeconfig': config})._headers(None)
    assert headers.getlist('Impersonate-User') == ['jane'] and headers.getlist('Impersonate-Group') == ['ops', 'backup']
    assert headers.getlist('Impersonate-Uid') == ['42'] and headers.getlist('Impersonate-Extra-scopes.example%2Fa%20b') == ['x', 'y']
    overridden = k8s.client_from_params({'kubeconfig': config, 'impersonate_user': 'bob', 'impersonate_groups': ['g']})._headers(None)
    assert overridden.getlist('Impersonate-User') == ['bob'] and overridden.getlist('Impersonate-Group') == ['g']
    plain = k8s.client_from_params({'kubeconfig': kubeconfig_mapping()})._headers(None)
    assert 'Impersonate-User' not in plain
    with pytest.raises(k8s.ConfigError, match='needs a user'):
        k8s.client_from_params({'kubeconfig': kubeconfig_mapping(**{'as-groups': ['ops']})})
