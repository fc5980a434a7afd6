"""The program: CLI, config, logging, daemon wiring, reload and state persistence."""
