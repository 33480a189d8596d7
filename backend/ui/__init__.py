"""The browser pages: sign-in, the annotation page and the lead's dashboard (Jinja2 + small ES modules)."""
