"""Plug-ins defined outside platypus/, as a user's own package would define them."""
