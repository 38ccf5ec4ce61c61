#!/usr/bin/env python3
"""Validates a FHIR bundle exported by the staff console with an independent implementation.

Usage: check_fhir.py BUNDLE.json [ResourceType ...]

The bundle must parse as an HL7 FHIR R4 (4.0.1) Bundle with fhir.resources (pydantic models
generated from the R4 specification; every entry's resource is validated against its own
model), and contain at least one resource of each type named. Prints one line per resource.
"""
import json
import sys

import fhir.resources
from fhir.resources.bundle import Bundle


def main() -> int:
    if fhir.resources.__fhir_version__ != "4.0.1":
        print(f"fhir.resources {fhir.resources.__version__} models FHIR "
              f"{fhir.resources.__fhir_version__}, not R4 (4.0.1); run scripts/setup-test-deps")
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    try:
        bundle = Bundle.parse_obj(data)
    except Exception as e:  # pydantic's ValidationError names every field at fault
        print(f"not a valid FHIR R4 Bundle: {e}")
        return 1
    found = {}
    for entry in bundle.entry or []:
        r = entry.resource
        found[r.resource_type] = found.get(r.resource_type, 0) + 1
        print(f"{r.resource_type} {entry.fullUrl}")
    missing = [t for t in sys.argv[2:] if t not in found]
    if missing:
        print(f"missing resource types: {', '.join(missing)} (found {found})")
        return 1
    print(f"valid FHIR {fhir.resources.__fhir_version__} Bundle: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
