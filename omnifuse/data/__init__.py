"""Raw-data readers and synthetic cohort generators."""
