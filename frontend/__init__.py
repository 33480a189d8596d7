"""Server-rendered pages: Jinja2 templates and static JavaScript/CSS (no build step)."""
