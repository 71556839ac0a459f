"""CDS Hooks 2.0.1 service: discovery, invocation, feedback, JWT verification (issue 4)."""
