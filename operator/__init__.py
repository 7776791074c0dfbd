"""modeldeploy operator: turns ModelDeployment resources into running, reachable model servers.

Installed under the import name ``modeldeploy_operator`` (the folder name ``operator`` is Python's
standard library). ``spec`` and ``builders`` are pure; ``kube`` talks to the API server;
``handlers`` wires them to kopf.
"""

GROUP = "modeldeploy.dev"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "modeldeploy-operator"
