"""The FHIR edge: parse and validate R4 resources, normalise them to facts, build outputs.

`models.py` is the only module that imports `fhir.resources`.
"""
