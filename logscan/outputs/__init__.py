"""What leaves the process: the metrics exposition, its HTTP server, alert notifications."""
