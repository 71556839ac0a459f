"""The FHIR edge: parse and validate R4 resources, normalise them to facts, build outputs.

Validation follows the R4 StructureDefinitions (`validation.py`, data compiled into `r4/definitions.json`).
"""
