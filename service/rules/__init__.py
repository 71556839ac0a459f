"""The pathway engine: pathway definitions as data, checks as pure functions, one evaluator.

Pure: imports nothing from web frameworks, databases, HTTP clients or FHIR models.
"""
