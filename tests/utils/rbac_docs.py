# docs/rbac.yml is the rbac role's template rendered with the role's defaults: one source for what the role
# applies and what people read or `kubectl apply`. `make rbac-docs` writes it; a unit test holds the two equal.
"""Render roles/rbac/templates/rbac.yml.j2 with roles/rbac/defaults/main.yml."""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "rbac"
DOCS = ROOT / "docs" / "rbac.yml"


def render(**overrides) -> str:
    """The template rendered with the role's defaults as the docs show them, `overrides` on top."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    # The docs show every rule a feature may need, each under its own object: readers apply what they use.
    defaults.update({'rbac_archive': True, 'rbac_hooks': True, 'rbac_recovery_points': True, 'rbac_resource_backup': True,
                     'rbac_resource_restore': True, 'rbac_restore': True, 'rbac_namespace_restore': True, **overrides})
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, autoescape=False)  # noqa: S701 - YAML, not HTML
    return environment.from_string((ROLE / "templates" / "rbac.yml.j2").read_text(encoding="utf-8")).render(defaults)


if __name__ == "__main__":
    DOCS.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {DOCS.relative_to(ROOT)}\n")
