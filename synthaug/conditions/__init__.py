"""synthaug.conditions."""
