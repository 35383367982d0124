"""What `funcx-endpoint configure NAME --multi-user` writes into the new
endpoint's directory: the parent's config.py (no blocks of its own: the
children run the tasks), multi_user.yaml, an example identity mapping, the
user config template and its schema, and a systemd unit to start the parent
at boot (written, not installed: the administrator copies it)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from endpoint.multiuser.site_config import FILE, MAPPING_FILE, SCHEMA_FILE, TEMPLATE_FILE

PARENT_CONFIG = '''"""Multi-user endpoint {name!r}: the parent only routes tasks; each submitter's
tasks run in a child endpoint started as their mapped local account (see
multi_user.yaml beside this file, and the README's "Multi-user endpoints").
It starts no blocks itself: keep the provider's blocks at 0."""
from parsl.providers import LocalProvider

from endpoint.config import Config

config = Config(
    display_name={name!r},
    # every user of the service may submit; the identity mapping decides who runs
    public=True,
    provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=0),
    scaling_enabled=False,
)
'''

SITE_YAML = """# Multi-user endpoint settings (the README's "Multi-user endpoints").
# Paths are relative to this directory.
identity_mapping_config_path: {mapping}
user_config_template_path: {template}
user_config_schema_path: {schema}
# a child with no task for this long is stopped (it comes back on the next task)
idle_timeout_s: 300
# child endpoints (distinct rendered configs) one account may have at once
max_children_per_user: 2
# child endpoints in all
max_children: 64
# tasks one account may have in flight here (more fail at once with
# USER_ENDPOINT_LIMIT), so one user's backlog never stops others' tasks being read
max_tasks_per_user: 1000
# accounts no identity may map to (root is always refused), the lowest and the
# highest uid (nobody, 65534, is above it), and groups whose members are refused
# (root-equivalent or reading secrets; "root" is gid 0)
denied_accounts: [nobody, root]
min_uid: 1000
max_uid: 60000
denied_groups: [adm, disk, docker, lxd, root, shadow, sudo, wheel]
# seconds an external identity mapping program may take
mapping_timeout_s: 10
# the Python children run (as the mapped accounts, who must be able to execute it
# and import funcX with it); default: the parent's own interpreter
# child_python: /opt/funcx/bin/python
"""

#: the example mapping: the service's user name is the local account name
MAPPING = [{"DATA_TYPE": "expression_identity_mapping#1.0.0",
            "mappings": [{"source": "{username}", "match": "([a-z_][a-z0-9_-]*)",
                          "output": "{0}"}]}]

TEMPLATE = """# The child endpoint's options, rendered for each submitter from their
# user_endpoint_config (checked against user_config_schema.json first).  Every
# {{ value }} is written as JSON, so a value is always data, never YAML syntax.
# Options: workers, prefetch, walltime, max_walltime, mem_per_worker,
# heartbeat_period, working_dir, debug.
workers: {{ workers | default(2) }}
walltime: {{ walltime | default(none) }}
working_dir: {{ working_dir | default(none) }}
"""

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "workers": {"type": "integer", "minimum": 1, "maximum": 8},
        "walltime": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
        "working_dir": {"type": "string", "maxLength": 255, "pattern": "^[A-Za-z0-9_./-]+$"},
    },
    "additionalProperties": False,
}

UNIT = """# systemd unit for the multi-user funcX endpoint {name!r}.  Install it with
#   cp {unit} /etc/systemd/system/ && systemctl daemon-reload
#   systemctl enable --now funcx-endpoint-{name}
[Unit]
Description=funcX multi-user endpoint {name}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=root
Environment=FUNCX_HOME={home}
ExecStart={python} -m endpoint.daemon {name}
KillMode=mixed
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
"""


def unit_name(name: str) -> str:
    return f"funcx-endpoint-{name}.service"


def write(directory: Path, name: str, home: Path) -> list[Path]:
    """Write the files (the directory must not hold a config yet); the paths written."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    unit = directory / unit_name(name)
    files = {
        directory / "config.py": PARENT_CONFIG.format(name=name),
        directory / FILE: SITE_YAML.format(mapping=MAPPING_FILE, template=TEMPLATE_FILE,
                                           schema=SCHEMA_FILE),
        directory / MAPPING_FILE: json.dumps(MAPPING, indent=2) + "\n",
        directory / TEMPLATE_FILE: TEMPLATE,
        directory / SCHEMA_FILE: json.dumps(SCHEMA, indent=2) + "\n",
        unit: UNIT.format(name=name, unit=unit, home=home, python=sys.executable),
    }
    for path, text in files.items():
        path.write_text(text)
        path.chmod(0o600)
    return list(files)
