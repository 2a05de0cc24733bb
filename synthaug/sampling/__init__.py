"""synthaug.sampling."""
