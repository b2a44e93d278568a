"""Stream processing: authenticated reports in, window summaries out."""
