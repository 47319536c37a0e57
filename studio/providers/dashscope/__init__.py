"""Alibaba Model Studio (DashScope): the only package that knows its JSON and words."""
