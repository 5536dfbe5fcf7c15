"""Deploying: the target contract, plugins, deploy.yaml and the operations across targets.

- :mod:`~tfdeploy.deployment.target`: :class:`Target`, its typed config and results, :class:`Progress`.
- :mod:`~tfdeploy.deployment.hookspecs`: the hooks a plugin implements.
- :mod:`~tfdeploy.deployment.registry`: loading plugins and the targets they register.
- :mod:`~tfdeploy.deployment.config`: deploy.yaml.
- :mod:`~tfdeploy.deployment.project`: a deploy.yaml, its model and its targets, opened.
- :mod:`~tfdeploy.deployment.runner`: running one operation on several targets, with retries.
- :mod:`~tfdeploy.deployment.verification`: comparing a target's answers with the local model's.
- :mod:`~tfdeploy.deployment.operations`: deploy, plan, status, verify, predict, undeploy, rollback.

The operations print nothing and exit nothing: they report through :class:`Progress` objects
the caller makes, and return typed results. The CLI does the printing.
"""
