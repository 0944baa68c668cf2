"""The automation engine's revisions, oldest first."""
