"""The pure middle: pipeline, aggregate, alert rules, and the state file format."""
