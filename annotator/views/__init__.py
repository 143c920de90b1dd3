"""HTML views, one module per resource they serve. Each view starts with an access
helper (``annotator.access``) that returns the object or 404s."""
