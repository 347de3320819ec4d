"""truckctl: plug-and-play infrastructure for a mobile race-data truck."""

__version__ = "0.1.0"
