"""synthaug.demo."""
