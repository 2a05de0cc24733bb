"""synthaug.metrics."""
