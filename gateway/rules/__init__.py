"""Local rule engine: rules from a TOML file, evaluated on every report, acting at once."""
