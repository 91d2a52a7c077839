"""JSON Schemas (draft 2020-12) of what anonymixer writes for scripts: ``--json`` output and reports.

    envelope.json   every ``--json`` object: "command", "anonymixer" (version), "exit_code"
    error.json      ``--json`` of a command that failed (exit 2) or was interrupted: the envelope + "error"
    doctor.json     ``anonymixer doctor --json``
    protect.json    ``anonymixer protect --json``: the envelope + report.json
    report.json     ``OUT/report.json`` of ``anonymixer protect``
    bench.json      ``anonymixer bench --json``
    evaluate.json   ``anonymixer evaluate --json``

The files ship in the package (``load_schema``); schemas refer to each other by their ``$id``
(``urn:anonymixer:schema:NAME``). ``validate`` checks an object with the ``jsonschema`` package
(in the dev extra; not needed at run time).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMAS = ("envelope", "error", "doctor", "protect", "report", "bench", "evaluate")


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` (one of ``SCHEMAS``) as a dictionary."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r}: choose one of {', '.join(SCHEMAS)}")
    data: dict[str, Any] = json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8"))
    return data


def validate(name: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` matches schema ``name`` (needs the
    ``jsonschema`` package: ``pip install 'anonymixer[dev]'``)."""
    import jsonschema
    from referencing import Registry, Resource

    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in map(load_schema, SCHEMAS))
    schema = load_schema(name)
    jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)
