"""HTML views for clinicians: Jinja2 templates, self-contained pages with no scripts."""
