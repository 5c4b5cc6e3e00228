# docs/rbac.yml is generated from the rbac role's template and defaults, never edited by hand.
from __future__ import annotations

import yaml

from ansible_collections.kubesnap.snapshots.tests.utils.rbac_docs import DOCS, render


def test_docs_rbac_is_the_role_template_rendered_with_its_defaults():
    assert DOCS.read_text(encoding='utf-8') == render(), 'docs/rbac.yml is stale: run make rbac-docs'


def test_the_rendering_is_the_documented_list_of_rbac_objects():
    kinds = [item['kind'] for item in yaml.safe_load(render())['items']]
    assert kinds == ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding',
                     'ClusterRole', 'ClusterRoleBinding',  # k8s_pv_archive's, shown with rbac_archive on
                     'ClusterRole', 'ClusterRoleBinding',  # k8s_recovery_point's, shown with rbac_recovery_points on
                     'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding',  # k8s_resource_backup's
                     'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding',  # k8s_resource_restore's
                     'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ClusterRoleBinding', 'RoleBinding',  # restores'
                     'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'RoleBinding']  # k8s_namespace_restore's


def test_the_scheduled_cycle_can_be_given_the_resource_backups_rights():
    def backup_subjects(**overrides):
        items = yaml.safe_load(render(**overrides))['items']
        [binding] = [i for i in items if i['kind'] == 'ClusterRoleBinding' and i['metadata']['name'] == 'kubesnap-resource-backup']
        return [subject['name'] for subject in binding['subjects']]
    assert backup_subjects(rbac_recovery_points=False) == ['kubesnap-resource-backup']
    assert backup_subjects(rbac_recovery_points=False, rbac_resource_backup_cycle=True) == ['kubesnap-resource-backup', 'kubesnap']


def test_pods_exec_is_granted_only_with_rbac_hooks():
    def main_rules(**overrides):
        items = yaml.safe_load(render(**overrides))['items']
        [role] = [i for i in items if i['kind'] == 'ClusterRole' and i['metadata']['name'] == 'kubesnap']
        return role['rules']
    assert {'apiGroups': [''], 'resources': ['pods/exec'], 'verbs': ['get', 'create']} in main_rules()
    assert not [rule for rule in main_rules(rbac_hooks=False) if set(rule['resources']) & {'pods', 'pods/exec'}]


def test_recovery_points_get_the_resource_backups_rights_and_the_snapshot_contents_list():
    items = yaml.safe_load(render(rbac_archive=False, rbac_resource_backup=False, rbac_resource_restore=False, rbac_restore=False,
                                  rbac_namespace_restore=False))['items']
    bindings = {i['metadata']['name']: [s['name'] for s in i['subjects']] for i in items if i['kind'] == 'ClusterRoleBinding'}
    assert bindings == {'kubesnap': ['kubesnap'], 'kubesnap-recovery-points': ['kubesnap'],
                        'kubesnap-resource-backup': ['kubesnap-resource-backup', 'kubesnap']}
    [role] = [i for i in items if i['kind'] == 'ClusterRole' and i['metadata']['name'] == 'kubesnap-recovery-points']
    assert {'list', 'get'} <= {verb for rule in role['rules'] if 'volumesnapshotcontents' in rule['resources'] for verb in rule['verbs']}
    assert not [i for i in yaml.safe_load(render(rbac_recovery_points=False))['items'] if 'recovery-points' in i['metadata']['name']]


def test_the_namespace_restore_runs_as_its_own_account_only_with_rbac_namespace_restore():
    items = yaml.safe_load(render())['items']
    [binding] = [i for i in items if i['kind'] == 'ClusterRoleBinding' and i['metadata']['name'] == 'kubesnap-namespace-restore']
    assert [s['name'] for s in binding['subjects']] == ['kubesnap-namespace-restore'] and binding['roleRef']['name'] == 'kubesnap-namespace-restore'
    assert not [i for i in yaml.safe_load(render(rbac_namespace_restore=False))['items'] if 'namespace-restore' in i['metadata']['name']]
