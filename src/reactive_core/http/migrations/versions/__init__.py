"""The HTTP plugin's revisions, oldest first."""
