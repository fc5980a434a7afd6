"""Where lines come from: followed files and the folder watcher (no parsing here)."""
