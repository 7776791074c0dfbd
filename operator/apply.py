"""Applying a ModelDeployment's children: the desired manifests from ``builders``, written with
server-side apply, and the kinds a spec no longer asks for deleted.

Every child is checked before any is written, so a name clash with an object this resource does
not own changes nothing.
"""

from __future__ import annotations

from typing import Any

from modeldeploy_operator import KIND, builders
from modeldeploy_operator.errors import SpecError
from modeldeploy_operator.kube import Kube
from modeldeploy_operator.spec import Spec


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


def apply_children(k: Kube, spec: Spec, uid: str, image: str) -> list[tuple[str, str]]:
    """Apply every child; returns what changed as (kind, Created|Updated|Deleted)."""
    name = builders.child_name(spec.name)
    plan = [(kind, desired, k.get(kind, spec.namespace, name)) for kind, desired in builders.children(spec, uid, image)]
    for kind, _, current in plan:
        if current is not None and not owned_by(current, uid):
            raise SpecError(f"a {kind} named {name!r} already exists and is not managed by this {KIND}; rename one of them")
    changed = []
    for kind, desired, current in plan:
        if desired is None:
            if current is not None:
                k.delete(kind, spec.namespace, name)
                changed.append((kind, "Deleted"))
            continue
        applied = k.apply(desired)
        if current is None:
            changed.append((kind, "Created"))
        elif applied["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            changed.append((kind, "Updated"))
    return changed
