"""The pure clinical core: facts about a patient and the results of evaluating them.

Nothing in this package imports FHIR models, web frameworks, databases or HTTP clients.
"""
