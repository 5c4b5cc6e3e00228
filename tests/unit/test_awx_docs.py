# docs/awx.md shows the credential types the schedule role creates: the same definitions, not a copy that drifts.
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_worked_example_shows_the_shipped_credential_types():
    shipped = yaml.safe_load((ROOT / 'roles' / 'schedule' / 'files' / 'awx_credential_types.yml').read_text(encoding='utf-8'))
    blocks = re.findall(r'```yaml\n(.*?)```', (ROOT / 'docs' / 'awx.md').read_text(encoding='utf-8'), re.DOTALL)
    assert yaml.safe_load(blocks[0]) == shipped
    assert [kind['name'] for kind in shipped] == ['kubesnap Kubernetes', 'kubesnap GCE', 'kubesnap AWS', 'kubesnap S3']
