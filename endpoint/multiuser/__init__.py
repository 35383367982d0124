"""Multi-user endpoints (issue 19): one parent endpoint per site, run by root
or a privileged service account, that maps each submitter's identity to a
local Unix account and runs that submitter's tasks only in a child endpoint
process started as that account.

- :mod:`.site_config`: the parent's ``multi_user.yaml`` and the files it names;
- :mod:`.mapper`: identity -> account (expression rules, external program, pwd);
- :mod:`.render`: the user config template (sandboxed Jinja) + schema -> child options;
- :mod:`.children`: one child (its own interchange, its manager as the user);
- :mod:`.router`: the parent's stand-in for the interchange, routing tasks to children;
- :mod:`.parent`: the parent agent; :mod:`.child`: the child's entry point (as the user);
- :mod:`.audit`: who ran what as which account, when; :mod:`.configure`: the files
  `funcx-endpoint configure NAME --multi-user` writes.
"""
