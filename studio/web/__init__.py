"""The studio's pages, one module per area; studio/urls.py maps them to paths."""
