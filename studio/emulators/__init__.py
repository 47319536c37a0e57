"""Loopback emulators of the providers' HTTP APIs: dev and test tools, never on the request path."""
