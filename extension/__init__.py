"""The jupyter_server extension: REST API under /syft/api/ and the owner dashboard."""
