"""recycle's composition root: settings, the embedded runtime, reports and the CLI."""
