"""synthaug.data."""
