"""Programs beside the app: the container's start-up and health check, the benchmark."""
