"""Model configuration files (YAML); see semrec.encoder.config for the format."""
