"""synthaug.data.readers."""
