"""The catalog plugin's revisions, oldest first."""
