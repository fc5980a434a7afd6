"""logscan: SMTP replies and delivery outcomes from mail logs, as Prometheus metrics and alerts."""

__version__ = "0.1.0"
