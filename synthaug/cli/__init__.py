"""Command-line interface: ``synthaug demo | train | sample | data inspect``."""
