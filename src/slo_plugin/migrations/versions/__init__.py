"""The SLO plugin's revisions, oldest first."""
