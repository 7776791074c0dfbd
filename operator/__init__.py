"""modeldeploy operator: turns ModelDeployment resources into running, reachable model servers.

Installed under the import name ``modeldeploy_operator`` (the folder name ``operator`` is Python's
standard library). ``spec``, ``builders`` and ``status`` are pure; ``apply`` writes the children,
``observe`` reads what runs and writes the status, ``reconcile`` does both for one resource;
``kube`` talks to the API server; ``handlers`` wires it all to kopf. What the operator knows of the
server comes from ``modelserver.contract`` and ``modelserver.settings`` (see docs/architecture.md).
"""

GROUP = "modeldeploy.dev"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "modeldeploy-operator"
