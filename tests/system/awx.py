# What AWX does with a credential before a job runs: its type's injectors, rendered in a Jinja sandbox with the
# credential's inputs, write files into the job's private data dir and yield environment variables and extra vars.
"""inject(): one credential's env, extra vars and files, as AWX's credential injection makes them."""

from __future__ import annotations

from pathlib import Path

import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parents[2]
CREDENTIAL_TYPES = ROOT / "roles" / "schedule" / "files" / "awx_credential_types.yml"


def credential_types() -> dict:
    return {kind["name"]: kind for kind in yaml.safe_load(CREDENTIAL_TYPES.read_text(encoding="utf-8"))}


def inject(type_name: str, inputs: dict, private_dir: Path) -> tuple[dict, dict]:
    """(env, extra_vars) of a credential of the shipped type `type_name`; its files are written under private_dir."""
    kind = credential_types()[type_name]
    missing = [field for field in kind["inputs"].get("required", []) if field not in inputs]
    assert not missing, f"{type_name}: required inputs missing: {missing}"
    sandbox = ImmutableSandboxedEnvironment()
    namespace = {field["id"]: inputs.get(field["id"], "") for field in kind["inputs"]["fields"]}
    injectors = kind["injectors"]
    # One file is tower.filename, several are tower.filename.<name>.
    files = {}
    for key, template in injectors.get("file", {}).items():
        path = private_dir / f"credential-{type_name.replace(' ', '-')}-{key.replace('.', '-')}"
        path.write_text(sandbox.from_string(template).render(**namespace), encoding="utf-8")
        path.chmod(0o600)
        files[key.split(".", 1)[1] if "." in key else None] = str(path)
    namespace["tower"] = {"filename": files.get(None) or files}
    env = {name: sandbox.from_string(template).render(**namespace) for name, template in injectors.get("env", {}).items()}
    extra_vars = {name: sandbox.from_string(template).render(**namespace) for name, template in injectors.get("extra_vars", {}).items()}
    return env, extra_vars
