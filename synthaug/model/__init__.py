"""synthaug.model."""
