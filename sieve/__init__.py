"""What the web tier and the workers share: settings, the database, images and events.

Nothing here imports torch or Flask: the web process stays small and the workers do not
carry the web framework.
"""
