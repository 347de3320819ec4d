"""The plug-and-play lifecycle: stage lock, run journal, prechecks, up, drift, status, down."""
