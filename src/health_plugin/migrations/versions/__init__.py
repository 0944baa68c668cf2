"""The health plugin's revisions, oldest first."""
